"""Units of euclidnn and conversion from the units data come in.

Internal units: length Å, energy eV, time fs, mass amu, charge e, temperature K
(so force eV/Å, stress eV/Å³, dipole e·Å, polarizability Å³). Every conversion factor is
taken from :mod:`ase.units` (CODATA 2014); none is retyped here.

Unit names are parsed from strings such as ``"kcal/mol"``, ``"Hartree/Bohr"``, ``"eV/Å^3"``,
``"a0^3"`` or ``"cal/mol/K"``: factors separated by ``/`` or ``*``, each with an optional
integer exponent ``^n`` (or ``**n``). Dimensions are checked, so converting an energy to a
length is an error, and so is reading a label in a unit of the wrong dimension
(``unit_factor("Bohr", "energy")``).

>>> round(convert(1.0, "kcal/mol", "eV"), 6)
0.043364
>>> round(convert(1.0, "Hartree/Bohr", "eV/Å"), 4)
51.4221
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from ase import units as _ase

__all__ = ["eV", "Angstrom", "fs", "amu", "unit_factor", "convert", "UNITS", "QUANTITIES"]

eV = 1.0  #: energy unit
Angstrom = 1.0  #: length unit
fs = 1.0  #: time unit
amu = 1.0  #: mass unit

# dimension exponents: (energy, length, time, mass, charge, temperature)
_E, _L, _T, _M, _Q, _K = np.eye(6, dtype=int)
_ONE = np.zeros(6, dtype=int)

#: Known unit names -> (factor to internal units, dimension vector).
UNITS: dict[str, tuple[float, np.ndarray]] = {
    # energy
    "eV": (1.0, _E),
    "meV": (1e-3, _E),
    "Hartree": (_ase.Hartree, _E),
    "Ha": (_ase.Hartree, _E),
    "Eh": (_ase.Hartree, _E),
    "Rydberg": (_ase.Rydberg, _E),
    "Ry": (_ase.Rydberg, _E),
    "kcal": (_ase.kcal, _E),
    "cal": (_ase.kcal / 1000, _E),
    "kJ": (_ase.kJ, _E),
    "J": (_ase.J, _E),
    # amount: a mole is a number of particles
    "mol": (_ase.mol, _ONE),
    # length
    "Å": (1.0, _L),
    "Angstrom": (1.0, _L),
    "Ang": (1.0, _L),
    "A": (1.0, _L),
    "Bohr": (_ase.Bohr, _L),
    "bohr": (_ase.Bohr, _L),
    "a0": (_ase.Bohr, _L),
    "nm": (_ase.nm, _L),
    "pm": (_ase.nm / 1000, _L),
    "m": (_ase.m, _L),
    # time (ase's time unit is not fs, so express everything relative to ase.units.fs)
    "fs": (1.0, _T),
    "ps": (1000.0, _T),
    "s": (_ase.s / _ase.fs, _T),
    "Hz": (_ase.fs / _ase.s, -_T),
    "GHz": (1e9 * _ase.fs / _ase.s, -_T),
    # mass
    "amu": (1.0, _M),
    "u": (1.0, _M),
    "Da": (1.0, _M),
    "kg": (_ase.kg, _M),
    # charge and dipole
    "e": (1.0, _Q),
    "C": (_ase.C, _Q),
    "D": (_ase.Debye, _Q + _L),
    "Debye": (_ase.Debye, _Q + _L),
    # temperature
    "K": (1.0, _K),
    # dimensionless
    "1": (1.0, _ONE),
    "": (1.0, _ONE),
}

#: the labels' units: what each measures (its internal unit) and examples for error messages
QUANTITIES: dict[str, tuple[str, str]] = {
    "energy": ("eV", "eV, meV, kcal/mol, kJ/mol, Hartree"),
    "length": ("Å", "Å, Bohr, nm"),
    "forces": ("eV/Å", "eV/Å, kcal/mol/Å, Hartree/Bohr"),
    "stress": ("eV/Å^3", "eV/Å^3, kcal/mol/Å^3, Hartree/Bohr^3"),
}

# names of common dimensions, for messages (energy, length, time, mass, charge, temperature)
_DIMENSION_NAMES = {
    (1, 0, 0, 0, 0, 0): "an energy",
    (0, 1, 0, 0, 0, 0): "a length",
    (1, -1, 0, 0, 0, 0): "a force",
    (1, -3, 0, 0, 0, 0): "a stress",
    (0, 0, 0, 0, 0, 0): "dimensionless",
    (0, 0, 1, 0, 0, 0): "a time",
    (0, 0, -1, 0, 0, 0): "a frequency",
    (0, 0, 0, 1, 0, 0): "a mass",
    (0, 0, 0, 0, 1, 0): "a charge",
    (0, 1, 0, 0, 1, 0): "a dipole",
    (0, 0, 0, 0, 0, 1): "a temperature",
}

_TOKEN = re.compile(r"^\s*([^\s^*]+?)\s*(?:(?:\^|\*\*)\s*(-?\d+))?\s*$")


@lru_cache(maxsize=256)
def _parse(unit: str) -> tuple[float, tuple[int, ...]]:
    factor, dimension = 1.0, _ONE.copy()
    if unit.strip() in ("", "1"):
        return factor, tuple(int(d) for d in dimension)
    # split on '/' and on single '*' (not '**'), keeping the operator
    parts = re.split(r"(/|(?<!\*)\*(?!\*))", unit.strip())
    sign = 1
    for part in parts:
        if part == "/":
            sign = -1
            continue
        if part == "*":
            sign = 1
            continue
        match = _TOKEN.match(part)
        if match is None or match.group(1) not in UNITS:
            name = part.strip() if match is None else match.group(1)
            raise ValueError(
                f"unknown unit {name!r} in {unit!r}; known: {', '.join(k for k in UNITS if k)}"
            )
        base, dim = UNITS[match.group(1)]
        power = sign * int(match.group(2) or 1)
        factor *= base**power
        dimension = dimension + power * dim
    return factor, tuple(int(d) for d in dimension)


def unit_factor(unit: str, quantity: str | None = None) -> float:
    """Factor that turns a value in ``unit`` into euclidnn's internal units.

    Args:
        unit: unit name, e.g. ``"kcal/mol"``, ``"Bohr"``, ``"Ha/a0"``, ``"eV/Å^3"``.
        quantity: what the unit must measure, a key of :data:`QUANTITIES` (``"energy"``,
            ``"length"``, ``"forces"``, ``"stress"``); ``None`` accepts any dimension.

    Raises:
        ValueError: an unknown unit, or one of another dimension than ``quantity``'s (the
            message says which dimension it has and gives valid examples).

    >>> unit_factor("nm")
    10.0
    >>> unit_factor("eV/Å", "forces")
    1.0
    >>> unit_factor("Bohr", "energy")
    Traceback (most recent call last):
    ...
    ValueError: 'Bohr' is not a unit of energy (it is a length); e.g. eV, meV, kcal/mol, kJ/mol, Hartree
    """
    factor, dimension = _parse(unit)
    if quantity is not None:
        internal, examples = QUANTITIES[quantity]
        if dimension != _parse(internal)[1]:
            noun = {"forces": "force"}.get(quantity, quantity)
            what = _DIMENSION_NAMES.get(dimension, f"of dimension {_dimension_text(dimension)}")
            raise ValueError(f"{unit!r} is not a unit of {noun} (it is {what}); e.g. {examples}")
    return factor


def _dimension_text(dimension: tuple[int, ...]) -> str:
    """``energy^1 length^-2``-style text of a dimension vector."""
    names = ("energy", "length", "time", "mass", "charge", "temperature")
    return " ".join(f"{n}^{d}" for n, d in zip(names, dimension) if d)


def convert(value, from_unit: str, to_unit: str = ""):
    """Convert ``value`` (number or array) from ``from_unit`` to ``to_unit``.

    ``to_unit`` defaults to the internal unit of the same dimension (eV, Å, fs, amu, e, K
    and their products), so ``convert(x, "Hartree")`` gives eV.

    Raises:
        ValueError: unknown unit name, or units of different dimension.

    >>> convert(2.0, "Bohr", "Bohr")
    2.0
    >>> convert(1.0, "eV", "Å")
    Traceback (most recent call last):
    ...
    ValueError: cannot convert 'eV' to 'Å': different dimensions
    """
    f_from, d_from = _parse(from_unit)
    if to_unit == "":
        return value * f_from
    f_to, d_to = _parse(to_unit)
    if d_from != d_to:
        raise ValueError(f"cannot convert {from_unit!r} to {to_unit!r}: different dimensions")
    return value * (f_from / f_to)
