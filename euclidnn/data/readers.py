"""Read labelled structures from extxyz (and anything ASE reads), ASE databases and .npz.

Every reader returns ``list[Structure]`` in eV and Å. The units of the file are arguments
(``energy_unit``, ``length_unit``, …), converted once here with factors from
:mod:`ase.units` (see :mod:`euclidnn.units`), each checked to measure what it converts (an
energy unit for energies, …). Files may carry their units, which are used unless an argument
overrides them: ASE databases in their metadata (``_property_unit_dict``, ``_distance_unit``),
extxyz files in their frame headers (``energy_unit=…``, ``length_unit=…``, ``force_unit=…``,
``stress_unit=…``, and ``<key>_unit=…`` for any other key, as ``euclidnn label`` writes them).
Errors name the file, the frame and the field.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..units import unit_factor
from .structure import Structure

__all__ = ["read", "read_npz", "MAX_ENERGY_PER_ATOM"]

#: |energy| / atom above this (eV) means the energy unit is wrong (total energies of the
#: heaviest elements are ~1e4 eV/atom; kcal/mol read as eV gives larger numbers).
MAX_ENERGY_PER_ATOM = 1e4

_LABELS = ("energy", "forces", "stress")


def read(
    path: str | os.PathLike,
    index: str | int | slice = ":",
    *,
    energy_unit: str | None = None,
    length_unit: str | None = None,
    forces_unit: str | None = None,
    stress_unit: str | None = None,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    property_units: Mapping[str, str] | None = None,
    per_atom_keys: Collection[str] = (),
    per_structure_keys: Collection[str] = (),
    format: str | None = None,
) -> list[Structure]:
    """Read structures and labels from a file; units converted to eV and Å.

    Formats: ASE databases (``.db``, ``.json`` with ``format="db"``), MD17-style ``.npz``
    (see :func:`read_npz`), and everything ``ase.io`` reads (extxyz, xyz, POSCAR, traj, …).
    Labels are looked up under ``energy_key`` / ``forces_key`` / ``stress_key`` in the
    calculator, then in ``atoms.info`` / ``atoms.arrays`` (extxyz) or the row's key-value pairs
    and ``row.data`` (databases). Every other numeric entry becomes a per-atom
    (``Structure.atom_properties``) or per-structure (``Structure.properties``) property, in
    internal units where its unit is known (``property_units``, or database metadata: QM9's
    Ha → eV, D → e·Å, a0³ → Å³, …). Per atom or not follows the key and where ASE keeps it,
    never the length (a water molecule's dipole has 3 entries for 3 atoms):

    1. ``per_atom_keys`` / ``per_structure_keys`` decide for the keys they name;
    2. ``atoms.arrays`` (extxyz per-atom columns, …) are per atom;
    3. calculator results and ``row.data`` entries named like an ASE output (:mod:`ase.outputs`)
       follow ASE: ``forces``, ``charges``, ``magmoms``, … per atom; ``dipole``,
       ``dielectric_tensor``, ``free_energy``, … per structure;
    4. the rest is per structure: ``atoms.info``, key-value pairs, and results or ``row.data``
       entries ASE does not name (ISO17's ``atomic_forces``: pass it in ``per_atom_keys``).

    Args:
        path: the file.
        index: frames to read: ``":"``, ``"2:10:2"``, ``-1``, or a ``slice``.
        energy_unit, length_unit, forces_unit, stress_unit: units in the file (default: the
            file's, else eV, Å, ``energy_unit/length_unit``, ``energy_unit/length_unit^3``).
        energy_key, forces_key, stress_key: names of the labels in the file (must be found).
        property_units: unit of other properties, e.g. ``{"dipole": "D"}``.
        per_atom_keys: properties read per atom (one row per atom), overriding the rule.
        per_structure_keys: properties read per structure, overriding the rule.
        format: ASE format name, when the extension does not tell.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming file, frame and field: unreadable or truncated file, invalid structure
            (NaN, atoms too close, …), labels in some frames only, |E|/atom above
            ``MAX_ENERGY_PER_ATOM`` eV, a unit of the wrong dimension or headers disagreeing,
            a label key in no frame, a key in both override lists, a per-atom key with rows ≠ n.

    >>> import tempfile, ase.io
    >>> from ase.build import molecule
    >>> atoms = molecule("H2O"); atoms.info["energy_ha"] = -76.4
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     ase.io.write(f"{tmp}/w.xyz", atoms)
    ...     (s,) = read(f"{tmp}/w.xyz", energy_key="energy_ha", energy_unit="Hartree")
    >>> round(s.energy, 2)
    -2078.95
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".npz":
        return read_npz(
            path,
            index,
            energy_unit=energy_unit or "eV",
            length_unit=length_unit or "Å",
            forces_unit=forces_unit,
            energy_key=energy_key,
            forces_key=forces_key,
        )
    given = dict(zip(_LABELS, (energy_key, forces_key, stress_key)))
    units = dict(energy=energy_unit, length=length_unit, forces=forces_unit, stress=stress_unit)
    overrides = _overrides(path, per_atom_keys, per_structure_keys)
    return _read_labelled(path, index, format, given, units, property_units or {}, overrides)


def _check_keys_found(path: Path, index, format, structures, given) -> None:
    """A label key given as argument (``given``: label → key or None) must be in some frame;
    the error lists the numeric keys of the first frame."""
    for name, key in given.items():
        if key is not None and all(getattr(s, name) is None for s in structures):
            raise ValueError(
                f"{path}: {name}_key {key!r}: no frame has this label; "
                f"{_known_keys(path, index, format)}"
            )


def _known_keys(path: Path, index, format) -> str:
    """The numeric keys of the first frame, for the message about a missing one."""
    frames, _, _ = _read_frames(path, index, format)
    if not frames:
        return "the file has no frames"
    keys = sorted(
        key
        for _, source in frames[0].sources
        for key, value in source.items()
        if np.asarray(value).dtype.kind in "iuf"
    )
    return f"frame {frames[0].index} has {', '.join(keys) or 'no numeric keys'}"


def _overrides(path: Path, per_atom_keys, per_structure_keys) -> dict[str, bool]:
    """Key → per atom (True) or per structure (False), as the caller chose."""
    both = set(per_atom_keys) & set(per_structure_keys)
    if both:
        raise ValueError(f"{path}: {sorted(both)} in both per_atom_keys and per_structure_keys")
    return {**dict.fromkeys(per_atom_keys, True), **dict.fromkeys(per_structure_keys, False)}


def _read_labelled(
    path: Path,
    index,
    format: str | None,
    given: Mapping[str, str | None],
    units: Mapping[str, str | None],
    property_units: Mapping[str, str],
    overrides: Mapping[str, bool],
) -> list[Structure]:
    """The frames of an ASE-readable file or database as validated Structures in eV and Å
    (:func:`read` after its arguments are settled); ``given``: the label keys given (label →
    key or None), ``units``: the file's units, where given."""
    keys = {name: key or name for name, key in given.items()}
    frames, metadata_units, distance_unit = _read_frames(path, index, format)
    energy_unit, factors = _unit_factors(
        path,
        keys,
        metadata_units,
        energy_unit=units["energy"],
        length_unit=units["length"] or distance_unit,
        forces_unit=units["forces"],
        stress_unit=units["stress"],
    )
    property_units = {**metadata_units, **property_units}
    structures = [
        _structure(path, frame, keys, factors, property_units, energy_unit, overrides)
        for frame in frames
    ]
    _check_consistent(path, structures)
    _check_keys_found(path, index, format, structures, given)
    return structures


class _Frame(NamedTuple):
    """One frame as read, before validation: where label lookups go is ``sources``."""

    index: int  # position in the file
    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    # (where ASE keeps them, values), searched in order for labels; the rest become properties
    sources: list[tuple[str, Mapping]]


# where ASE keeps a frame's values: which of them are per atom (see `read`)
_PER_ATOM, _BY_ASE_NAME, _PER_STRUCTURE = "per atom", "by ASE name", "per structure"


@functools.cache
def _ase_per_atom_outputs() -> frozenset[str]:
    """Names of the calculator outputs ASE declares per atom (shape ``('natoms', ...)``)."""
    from ase.outputs import all_outputs

    return frozenset(k for k, v in all_outputs.items() if v.shapespec[:1] == ("natoms",))


def _is_per_atom(key: str, where: str, overrides: Mapping[str, bool]) -> bool:
    """The rule of :func:`read`: overrides, then where ASE keeps the value, then its name."""
    if key in overrides:
        return overrides[key]
    if where == _BY_ASE_NAME:
        return key in _ase_per_atom_outputs()
    return where == _PER_ATOM


def _read_frames(path: Path, index, format) -> tuple[list[_Frame], dict[str, str], str | None]:
    """Frames of an ASE database (``.db``, or any file with ``format="db"``) or of any file
    ``ase.io`` reads, with the property units and the distance unit the database's metadata
    declare (none for other files)."""
    if format == "db" or (format is None and path.suffix == ".db"):
        return _read_db(path, index)
    frames = _read_ase(path, index, format)
    units = _header_units(path, frames)
    return frames, units, units.pop("length", None)


#: header keys that name the unit of a label under another name than ``<label>_unit``
_HEADER_UNIT_ALIASES = {"force_unit": "forces"}


def _header_units(path: Path, frames: list[_Frame]) -> dict[str, str]:
    """The units an extxyz file declares in its headers, by the key they describe:
    ``<key>_unit=…`` (``energy_unit``, ``stress_unit``, ``dipole_unit``, …), ``force_unit`` for
    ``forces``, ``length_unit`` under ``"length"``. Every frame must declare the same."""
    units: dict[str, str] = {}
    first: dict[str, int] = {}
    for frame in frames:
        info = next(source for where, source in frame.sources if where == _PER_STRUCTURE)
        for header, unit in info.items():
            if not (isinstance(header, str) and header.endswith("_unit") and isinstance(unit, str)):
                continue
            key = _HEADER_UNIT_ALIASES.get(header, header[: -len("_unit")])
            if units.setdefault(key, unit) != unit:
                raise ValueError(
                    f"{path}: frame {frame.index}: {header}={unit!r}, but frame {first[key]} "
                    f"declares {units[key]!r}; a file has one unit per label (split the file, "
                    "or convert it)"
                )
            first.setdefault(key, frame.index)
    return units


def _unit_factors(
    path: Path,
    keys: Mapping[str, str],
    metadata_units: Mapping[str, str],
    *,
    energy_unit: str | None,
    length_unit: str | None,
    forces_unit: str | None,
    stress_unit: str | None,
) -> tuple[str, dict[str, float]]:
    """The energy unit and the factors that convert energy, length, forces and stress to eV
    and Å. An argument wins over the database's metadata (looked up under the label's key),
    which wins over eV and Å; forces and stress default to energy/length and energy/length³."""
    energy_unit = energy_unit or metadata_units.get(keys["energy"]) or "eV"
    length_unit = length_unit or "Å"
    units = {
        "energy": energy_unit,
        "length": length_unit,
        "forces": forces_unit
        or metadata_units.get(keys["forces"])
        or f"{energy_unit}/{length_unit}",
        "stress": stress_unit
        or metadata_units.get(keys["stress"])
        or f"{energy_unit}/{length_unit}^3",
    }
    factors = {}
    for name, unit in units.items():
        try:
            factors[name] = unit_factor(unit, name)
        except ValueError as error:
            raise ValueError(f"{path}: {name}_unit: {error}") from error
    return energy_unit, factors


def _select(path, items: list, index) -> list[tuple[int, object]]:
    """``(position, item)`` pairs picked by ``index`` (``":"``, ``"1:5"``, ``-1``, slice)."""
    from ase.io.formats import string2index

    try:
        selection = string2index(index) if isinstance(index, str) else index
        numbered = list(enumerate(items))
        return numbered[selection] if isinstance(selection, slice) else [numbered[selection]]
    except (IndexError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: index {index!r}: {error} ({len(items)} frames)") from error


def iread(path: Path, format: str | None = None):
    """``ase.io.iread(path, ":", format)``, with a compressed file (``.gz``, ``.bz2``, ``.xz``)
    decompressed into memory first: ASE's extxyz reader seeks back to every frame, and a seek
    back in a gzip stream decompresses it again from the start (2,000 frames of ethanol: 40 s
    instead of 1 s)."""
    import ase.io
    from ase.io.formats import filetype, get_compression, open_with_compression

    source = path
    if get_compression(str(path))[1] is not None:
        format = format or filetype(str(path))
        with open_with_compression(str(path), "rb") as stream:
            data = stream.read()
        try:
            source = io.StringIO(data.decode())
        except UnicodeDecodeError:  # a binary format
            source = io.BytesIO(data)
    return ase.io.iread(source, index=":", format=format)


def _read_ase(path: Path, index, format) -> list[_Frame]:
    """Frames from ``ase.io``: the calculator's results, then ``info``, then ``arrays``.

    The whole file is parsed (so that an error names the frame's position in the file), then
    ``index`` selects frames.
    """
    images = []
    try:
        for atoms in iread(path, format):
            images.append(atoms)
    except Exception as error:  # ase raises ValueError, KeyError, IndexError, … on bad files
        raise ValueError(
            f"{path}: frame {len(images)}: cannot read ({type(error).__name__}: {error})"
        ) from error
    frames = []
    for i, atoms in _select(path, images, index):
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        arrays = {k: v for k, v in atoms.arrays.items() if k not in ("numbers", "positions")}
        frames.append(
            _Frame(
                i,
                atoms.numbers,
                atoms.positions,
                np.array(atoms.cell),
                atoms.pbc,
                [(_BY_ASE_NAME, results), (_PER_STRUCTURE, atoms.info), (_PER_ATOM, arrays)],
            )
        )
    return frames


def _read_db(path: Path, index) -> tuple[list[_Frame], dict[str, str], str | None]:
    """Frames of an ASE database (calculator columns, key-value pairs, ``row.data``), the
    property units and the distance unit from its metadata."""
    from ase.calculators.calculator import all_properties
    from ase.db import connect

    try:
        db = connect(str(path), type="json" if path.suffix == ".json" else "db")
        metadata = db.metadata
        rows = list(db.select())
    except Exception as error:
        message = f"{path}: cannot read database ({type(error).__name__}: {error})"
        raise ValueError(message) from error
    frames = []
    for i, row in _select(path, rows, index):
        calc = {k: row.get(k) for k in all_properties if row.get(k) is not None}
        sources = [
            (_BY_ASE_NAME, calc),
            (_PER_STRUCTURE, dict(row.key_value_pairs)),
            (_BY_ASE_NAME, dict(row.data)),
        ]
        frames.append(_Frame(i, row.numbers, row.positions, np.array(row.cell), row.pbc, sources))
    units = dict(metadata.get("_property_unit_dict", {}))
    return frames, units, metadata.get("_distance_unit")


def _structure(
    path, frame: _Frame, keys, factors, property_units, energy_unit, overrides=None
) -> Structure:
    """Validated Structure in eV/Å from one frame; errors name file, frame and field.
    ``overrides``: key → per atom (True) or per structure (False), ahead of :func:`read`'s
    rule."""
    where = f"{path}: frame {frame.index}"
    n = len(frame.numbers)
    labels, properties, atom_properties = {}, {}, {}
    for name in _LABELS:
        value = _lookup(frame.sources, keys[name])
        if value is not None:
            labels[name] = np.asarray(value, dtype=np.float64) * factors[name]
    if "energy" in labels:
        labels["energy"] = _scalar(where, keys["energy"], labels["energy"])
    if "stress" in labels and labels["stress"].size == 9:
        labels["stress"] = labels["stress"].reshape(3, 3)
    skip = set(keys.values()) | set(_LABELS)
    for where_kept, source in frame.sources:
        for key, value in source.items():
            if key in skip or key in properties or key in atom_properties:
                continue
            array = np.asarray(value)
            if array.dtype.kind not in "iuf":  # strings, booleans, objects are not labels
                continue
            if key in property_units:
                try:
                    array = array * unit_factor(property_units[key])
                except ValueError as error:
                    raise ValueError(f"{where}: property {key!r}: {error}") from error
            if _is_per_atom(key, where_kept, overrides or {}):
                if array.ndim == 0 or array.shape[0] != n:
                    raise ValueError(
                        f"{where}: property {key!r}: read per atom but has shape "
                        f"{array.shape}, not ({n}, ...) for the {n} atoms"
                    )
                atom_properties[key] = array
            else:
                properties[key] = array.reshape(()) if array.shape == (1,) else array
    try:
        structure = Structure(
            numbers=frame.numbers,
            positions=np.asarray(frame.positions, dtype=np.float64) * factors["length"],
            cell=np.asarray(frame.cell, dtype=np.float64) * factors["length"],
            pbc=frame.pbc,
            properties=properties,
            atom_properties=atom_properties,
            **labels,
        )
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    if structure.energy is not None and abs(structure.energy) / n > MAX_ENERGY_PER_ATOM:
        raise ValueError(
            f"{where}: energy: {structure.energy:.6g} eV for {n} atoms "
            f"(> {MAX_ENERGY_PER_ATOM:g} eV/atom) after reading it as {energy_unit!r}; "
            "pass the file's energy_unit (e.g. 'kcal/mol', 'kJ/mol', 'Hartree')"
        )
    return structure


def _lookup(sources, key):
    for _, source in sources:
        if key in source and source[key] is not None:
            return source[key]
    return None


def _scalar(where, key, value):
    if value.size != 1:
        raise ValueError(f"{where}: energy ({key!r}): expected one number, got shape {value.shape}")
    return float(value.reshape(()))


def _check_consistent(path, structures) -> None:
    """Refuse files where a label is present in some frames and missing in others."""
    for name in _LABELS:
        present = [getattr(s, name) is not None for s in structures]
        if any(present) and not all(present):
            first_missing = present.index(False)
            first_present = present.index(True)
            raise ValueError(
                f"{path}: frame {first_missing}: {name}: missing, but present in frame "
                f"{first_present} (frames with and without {name} mixed)"
            )


def read_npz(
    path: str | os.PathLike,
    index: str | int | slice = ":",
    *,
    energy_unit: str = "eV",
    length_unit: str = "Å",
    forces_unit: str | None = None,
    positions_key: str | None = None,
    numbers_key: str | None = None,
    energy_key: str | None = None,
    forces_key: str | None = None,
) -> list[Structure]:
    """Read an MD17-style ``.npz`` trajectory of one molecule (no cell, not periodic).

    Keys default to MD17's ``R`` (positions [n_frames, n_atoms, 3]), ``z`` (numbers
    [n_atoms] or [n_frames, n_atoms]), ``E`` (energies [n_frames] or [n_frames, 1]), ``F``
    (forces [n_frames, n_atoms, 3]); revised MD17's ``coords``, ``nuclear_charges``,
    ``energies``, ``forces`` are recognised too. MD17 is in kcal/mol and Å: pass
    ``energy_unit="kcal/mol"``. A key given as argument must exist.

    Raises:
        FileNotFoundError: no such file.
        ValueError: as :func:`read`, and for missing keys or inconsistent array shapes.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = dict(np.load(path, allow_pickle=False))
    except Exception as error:
        raise ValueError(f"{path}: cannot read npz ({type(error).__name__}: {error})") from error

    def pick(given, candidates, field, required=True):
        for key in [given] if given else candidates:
            if key in data:
                return data[key]
        if required or given:
            tried = [given] if given else candidates
            raise ValueError(
                f"{path}: {field}: none of the keys {tried} found; keys are {sorted(data)}"
            )
        return None

    positions = pick(positions_key, ["R", "coords", "positions"], "positions")
    numbers = pick(numbers_key, ["z", "nuclear_charges", "numbers", "Z"], "numbers")
    energies = pick(energy_key, ["E", "energies", "energy"], "energy", required=False)
    forces = pick(forces_key, ["F", "forces"], "forces", required=False)
    if positions.ndim == 2:
        positions = positions[None]
    n_frames = len(positions)
    try:
        numbers = np.broadcast_to(numbers, positions.shape[:2])
    except ValueError as error:
        message = f"numbers shape {numbers.shape}, positions {positions.shape}"
        raise ValueError(f"{path}: numbers: {message}") from error
    for name, array in (("energy", energies), ("forces", forces)):
        if array is not None and len(array) != n_frames:
            raise ValueError(f"{path}: {name}: {len(array)} frames, positions have {n_frames}")
    units = {"energy": energy_unit, "length": length_unit}
    units["forces"] = forces_unit or f"{energy_unit}/{length_unit}"
    factors = {"stress": 1.0}
    for name, unit in units.items():
        try:
            factors[name] = unit_factor(unit, name)
        except ValueError as error:
            raise ValueError(f"{path}: {name}_unit: {error}") from error
    keys = {name: name for name in _LABELS}
    structures = []
    for i, _ in _select(path, list(range(n_frames)), index):
        labels = {}
        if energies is not None:
            labels["energy"] = energies[i]
        if forces is not None:
            labels["forces"] = forces[i]
        cell, pbc = np.zeros((3, 3)), np.zeros(3, bool)
        frame = _Frame(i, numbers[i], positions[i], cell, pbc, [(_BY_ASE_NAME, labels)])
        structures.append(_structure(path, frame, keys, factors, {}, energy_unit))
    return structures
