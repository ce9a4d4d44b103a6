"""Do the labels look like eV and Å? Scale checks that catch a file read in the wrong unit.

A unit mistake does not crash anything: a model trains on forces 23× too large (kcal/mol/Å
read as eV/Å) and learns a potential 23× too stiff. Two signs give it away:

- **the force scale.** Sampled structures of real systems have RMS force components of
  0.1–3 eV/Å (the shipped sets, MD at 500 K: 0.8–1.3 eV/Å); no real data set reaches
  :data:`FORCE_RMS_LIMIT` (10 eV/Å), while kcal/mol/Å read as eV/Å gives 20–30. Forces below
  :data:`SMALL_FORCE_RMS` (0.05 eV/Å) are what Hartree/Bohr read as eV/Å gives (or a set of
  near-equilibrium geometries only).
- **energies against forces.** Between consecutive frames of a trajectory the energy changes
  by ΔE ≈ −½ (F₁ + F₂)·Δr. When the energies and the forces are read in units that do not match
  (Hartree/Bohr forces read as Hartree/Å: ``--energy-unit Hartree`` alone), the ratio of the
  two sides is that mismatch (1.89) instead of 1 (0.8–1.0 on the shipped sets).

:func:`label_scale_warnings` runs both and returns one line per finding, naming the likely
unit and the option to pass; with ``max_force_rms`` it refuses forces beyond it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from ase import units as _ase

from .stats import force_rms
from .structure import Structure

__all__ = ["FORCE_RMS_LIMIT", "SMALL_FORCE_RMS", "label_scale_warnings"]

#: eV/Å; an RMS force component above this is a wrong unit (training refuses it by default)
FORCE_RMS_LIMIT = 10.0
#: eV/Å; an RMS force component below this is worth a warning (Hartree/Bohr read as eV/Å?)
SMALL_FORCE_RMS = 0.05

_KCAL_MOL = _ase.kcal / _ase.mol
_KJ_MOL = _ase.kJ / _ase.mol
#: units force files come in, with their size in eV/Å
_FORCE_UNITS = {
    "kcal/mol/Å": _KCAL_MOL,
    "kJ/mol/Å": _KJ_MOL,
    "meV/Å": 1e-3,
    "Hartree/Bohr": _ase.Hartree / _ase.Bohr,
    "Hartree/Å": _ase.Hartree,
    "Rydberg/Bohr": _ase.Rydberg / _ase.Bohr,
}
_HARTREE_BOHR = _ase.Hartree / _ase.Bohr
#: unit mismatches between energies and forces: the ratio ΔE / (−F·Δr) each produces → cause
_MISMATCHES = {
    1 / _ase.Bohr: "forces per Bohr read per Å (e.g. Hartree/Bohr as Hartree/Å)",
    _ase.Bohr: "forces per Å read per Bohr, or positions in Bohr read as Å",
    1 / _KCAL_MOL: "energies in kcal/mol read as eV, or forces in eV/Å read as kcal/mol/Å",
    _KCAL_MOL: "forces in kcal/mol/Å read as eV/Å, or energies in eV read as kcal/mol",
    _ase.Hartree: "forces in Hartree/Å read as eV/Å, or energies in eV read as Hartree",
    1 / _ase.Hartree: "energies in Hartree read as eV, or forces in eV/Å read as Hartree/Å",
    _HARTREE_BOHR: "forces in Hartree/Bohr read as eV/Å",
    1 / _HARTREE_BOHR: "forces in eV/Å read as Hartree/Bohr",
}


def label_scale_warnings(
    structures: Sequence[Structure], max_force_rms: float | None = None
) -> list[str]:
    """One line per sign that the labels were read in a wrong unit (see the module
    docstring): forces far outside real data, energies that disagree with the forces.

    Args:
        structures: labelled structures, in eV and Å as read.
        max_force_rms: eV/Å; refuse an RMS force component above it (``None``: warn only).

    Raises:
        ValueError: the RMS force component exceeds ``max_force_rms``; the message names the
            likely unit and the option to pass.

    >>> s = Structure([1, 1], [[0, 0, 0], [0, 0, 0.74]], forces=[[0, 0, 40.0], [0, 0, -40.0]])
    >>> print(label_scale_warnings([s])[0])  # doctest: +ELLIPSIS
    RMS force component 23.1 eV/Å: more than real data have (0.1–3 eV/Å); as kcal/mol/Å ...
    """
    found = []
    if any(s.forces is not None for s in structures):
        rms = force_rms(structures)
        message = _force_scale(rms)
        if message and max_force_rms is not None and rms > max_force_rms:
            raise ValueError(
                f"{message}; training refuses forces above data.max_force_rms = "
                f"{max_force_rms:g} eV/Å (set it higher in --config if they are real)"
            )
        found += [message] if message else []
    ratio = _energy_force_ratio(structures)
    if ratio is not None and not 0.6 <= ratio <= 1.6:
        causes = [c for k, c in _MISMATCHES.items() if abs(math.log(ratio / k)) < 0.12]
        found.append(
            f"energies and forces disagree: between consecutive frames ΔE ≈ {ratio:.3g} × "
            f"(−F·Δr) instead of 1 ({' or '.join(causes) or 'a unit mismatch'}?); check "
            "--energy-unit, --forces-unit and --length-unit"
        )
    return found


def _force_scale(rms: float) -> str:
    """The warning for an RMS force component of ``rms`` eV/Å outside real data, or ''."""
    if SMALL_FORCE_RMS <= rms <= FORCE_RMS_LIMIT or rms == 0:
        return ""
    # the unit that would bring the data nearest 1 eV/Å, the middle of real data
    unit = min(_FORCE_UNITS, key=lambda u: abs(math.log(rms * _FORCE_UNITS[u])))
    which = "more" if rms > FORCE_RMS_LIMIT else "less"
    energy = unit.rsplit("/", 1)[0]
    also = (
        f"or --energy-unit {energy}, which implies {unit}, when the energies are in {energy}"
        if unit.endswith("/Å")
        else f"and --energy-unit {energy} if the energies are in {energy}"
    )
    return (
        f"RMS force component {rms:.3g} eV/Å: {which} than real data have (0.1–3 eV/Å); "
        f"as {unit} it would be {rms * _FORCE_UNITS[unit]:.3g} eV/Å: pass --forces-unit "
        f"{unit} ({also})"
    )


def _energy_force_ratio(structures: Sequence[Structure], max_step: float = 0.15) -> float | None:
    """The ratio of ΔE to −½(F₁ + F₂)·Δr over consecutive frames of one system whose atoms
    moved less than ``max_step`` Å (RMS): ‖ΔE‖ / ‖−F·Δr‖, which, unlike a least-squares slope,
    is not pulled towards 0 by the trapezoid rule's error. ``None`` when fewer than 20 such
    pairs, or when they do not correlate (frames too far apart for the trapezoid rule)."""
    observed, predicted = [], []
    for a, b in zip(structures[:-1], structures[1:]):
        labelled = all(x is not None for x in (a.energy, b.energy, a.forces, b.forces))
        same = a.num_atoms == b.num_atoms and np.array_equal(a.numbers, b.numbers)
        if not (labelled and same and np.array_equal(a.cell, b.cell)):
            continue
        step = b.positions - a.positions
        if np.sqrt(np.mean(np.sum(step**2, axis=1))) < max_step:
            observed.append(b.energy - a.energy)
            predicted.append(-0.5 * float(np.sum((a.forces + b.forces) * step)))
    observed, predicted = np.array(observed), np.array(predicted)
    if len(observed) < 20 or not np.any(predicted):
        return None
    if np.corrcoef(observed, predicted)[0, 1] < 0.8:
        return None
    return float(np.linalg.norm(observed) / np.linalg.norm(predicted))
