"""Read labelled structures from extxyz (and anything ASE reads), ASE databases and .npz.

Every reader returns ``list[Structure]`` in eV and Å. The units of the file are arguments
(``energy_unit``, ``length_unit``, …), converted once here with factors from
:mod:`ase.units` (see :mod:`euclidnn.units`); ASE databases may carry their units in the
metadata (``_property_unit_dict``, ``_distance_unit``), which are used unless an argument
overrides them. Errors name the file, the frame and the field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

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
    format: str | None = None,
) -> list[Structure]:
    """Read structures and labels from a file; units converted to eV and Å.

    Formats: ASE databases (``.db``, ``.json`` with ``format="db"``), MD17-style ``.npz``
    (see :func:`read_npz`), and everything ``ase.io`` reads (extxyz, xyz, POSCAR, traj, …).

    Labels are looked up under ``energy_key`` / ``forces_key`` / ``stress_key`` (default
    ``energy``, ``forces``, ``stress``) in the attached calculator, then in ``atoms.info`` /
    ``atoms.arrays`` (extxyz) or the row's key-value pairs and ``row.data`` (databases).
    All other numeric entries become ``Structure.properties`` (per structure) or
    ``atom_properties`` (arrays whose first dimension is the number of atoms, n > 1),
    converted to internal units when their unit is known from ``property_units`` or the
    database metadata (e.g. QM9's Ha → eV, D → e·Å, a0³ → Å³, GHz → 1/fs), and kept as
    stored otherwise; one-element arrays become scalars.

    Args:
        path: the file.
        index: frames to read: ``":"``, ``"2:10:2"``, ``-1``, or a ``slice``.
        energy_unit: unit of energies in the file (default: db metadata, else eV).
        length_unit: unit of positions and cell (default: db metadata, else Å).
        forces_unit: default ``energy_unit/length_unit``.
        stress_unit: default ``energy_unit/length_unit^3``.
        energy_key, forces_key, stress_key: names of the labels in the file.
        property_units: unit of other properties, e.g. ``{"dipole": "D"}``.
        format: ASE format name, when the extension does not tell.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable or truncated file, invalid structure (NaN, atoms too close,
            unknown element, singular periodic cell), labels present in some frames and
            missing in others, or energies too large for the unit (|E|/atom >
            ``MAX_ENERGY_PER_ATOM`` eV) — always naming file, frame and field.

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
    units = dict(
        energy_unit=energy_unit,
        length_unit=length_unit,
        forces_unit=forces_unit,
        stress_unit=stress_unit,
        property_units=dict(property_units or {}),
    )
    keys = dict(energy=energy_key or "energy", forces=forces_key or "forces")
    keys["stress"] = stress_key or "stress"
    if path.suffix == ".npz":
        return read_npz(path, index, energy_unit=energy_unit or "eV",
                        length_unit=length_unit or "Å", forces_unit=forces_unit,
                        energy_key=energy_key, forces_key=forces_key)
    if format == "db" or (format is None and path.suffix == ".db"):
        frames = _read_db(path, index, units)
    else:
        frames = _read_ase(path, index, format)
    return _finish(path, frames, keys, units)


def _read_ase(path: Path, index, format):
    """Yield (frame, numbers, positions, cell, pbc, sources, metadata) from ase.io.

    The whole file is parsed (so that errors name the frame's position in the file), then
    ``index`` selects frames.
    """
    import ase.io
    from ase.io.formats import string2index

    frames = []
    try:
        for atoms in ase.io.iread(path, index=":", format=format):
            frames.append(atoms)
    except Exception as error:  # ase raises ValueError, KeyError, IndexError, … on bad files
        raise ValueError(
            f"{path}: frame {len(frames)}: cannot read ({type(error).__name__}: {error})"
        ) from error
    selection = string2index(index) if isinstance(index, str) else index
    numbered = list(enumerate(frames))
    numbered = numbered[selection] if isinstance(selection, slice) else [numbered[selection]]
    for frame, atoms in numbered:
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        arrays = {k: v for k, v in atoms.arrays.items() if k not in ("numbers", "positions")}
        yield frame, atoms.numbers, atoms.positions, np.array(atoms.cell), atoms.pbc, \
            [results, atoms.info, arrays], {}


def _read_db(path: Path, index, units):
    from ase.db import connect
    from ase.io.formats import string2index

    try:
        db = connect(str(path), type="db" if path.suffix != ".json" else "json")
        metadata = db.metadata
        rows = list(db.select())
    except Exception as error:
        message = f"{path}: cannot read database ({type(error).__name__}: {error})"
        raise ValueError(message) from error
    unit_dict = dict(metadata.get("_property_unit_dict", {}))
    units["length_unit"] = units["length_unit"] or metadata.get("_distance_unit")
    units["metadata"] = unit_dict
    selection = string2index(index) if isinstance(index, str) else index
    numbered = list(enumerate(rows))
    numbered = numbered[selection] if isinstance(selection, slice) else [numbered[selection]]
    for frame, row in numbered:
        calc = {k: row.get(k) for k in _LABELS if row.get(k) is not None}
        yield frame, row.numbers, row.positions, np.array(row.cell), row.pbc, \
            [calc, dict(row.key_value_pairs), dict(row.data)], {"id": row.id}


def _finish(path, frames, keys, units) -> list[Structure]:
    structures = []
    for frame, numbers, positions, cell, pbc, sources, _ in frames:
        metadata_units = units.get("metadata", {})  # set by _read_db once it has started
        structures.append(
            _structure(path, frame, numbers, positions, cell, pbc, sources, keys, units,
                       metadata_units)
        )
    _check_consistent(path, structures)
    return structures


def _label_units(keys, units, metadata_units):
    energy = units["energy_unit"] or metadata_units.get(keys["energy"]) or "eV"
    length = units["length_unit"] or "Å"
    forces = units["forces_unit"] or metadata_units.get(keys["forces"]) or f"{energy}/{length}"
    stress = (
        units["stress_unit"] or metadata_units.get(keys["stress"]) or f"{energy}/{length}^3"
    )
    return energy, length, forces, stress


def _structure(path, frame, numbers, positions, cell, pbc, sources, keys, units, metadata_units):
    where = f"{path}: frame {frame}"
    energy_u, length_u, forces_u, stress_u = _label_units(keys, units, metadata_units)
    try:
        factors = {
            "energy": unit_factor(energy_u),
            "forces": unit_factor(forces_u),
            "stress": unit_factor(stress_u),
        }
        length = unit_factor(length_u)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    n = len(numbers)
    labels, properties, atom_properties = {}, {}, {}
    used = set(keys.values())
    for name in _LABELS:
        value = _lookup(sources, keys[name])
        if value is not None:
            labels[name] = np.asarray(value, dtype=np.float64) * factors[name]
    if "energy" in labels:
        labels["energy"] = _scalar(where, keys["energy"], labels["energy"])
    if "stress" in labels and labels["stress"].size == 9:
        labels["stress"] = labels["stress"].reshape(3, 3)
    prop_units = {**metadata_units, **units["property_units"]}
    for source in sources:
        for key, value in source.items():
            if key in used or key in _LABELS or key in properties or key in atom_properties:
                continue
            array = np.asarray(value)
            if array.dtype.kind not in "biuf" or array.dtype.kind == "b":
                continue
            if key in prop_units:
                try:
                    array = array * unit_factor(prop_units[key])
                except ValueError as error:
                    raise ValueError(f"{where}: property {key!r}: {error}") from error
            if n > 1 and array.ndim >= 1 and array.shape[0] == n:
                atom_properties[key] = array
            else:
                properties[key] = array.reshape(()) if array.shape == (1,) else array
    try:
        structure = Structure(
            numbers=numbers,
            positions=np.asarray(positions, dtype=np.float64) * length,
            cell=np.asarray(cell, dtype=np.float64) * length,
            pbc=pbc,
            properties=properties,
            atom_properties=atom_properties,
            **labels,
        )
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    if structure.energy is not None and abs(structure.energy) / n > MAX_ENERGY_PER_ATOM:
        raise ValueError(
            f"{where}: energy: {structure.energy:.6g} eV for {n} atoms "
            f"(> {MAX_ENERGY_PER_ATOM:g} eV/atom) after reading it as {energy_u!r}; "
            "pass the file's energy_unit (e.g. 'kcal/mol', 'kJ/mol', 'Hartree')"
        )
    return structure


def _lookup(sources, key):
    for source in sources:
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
    ``energy_unit="kcal/mol"``.
    """
    from ase.io.formats import string2index

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
        if required:
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
    numbers = np.broadcast_to(numbers, (n_frames, positions.shape[1]))
    selection = string2index(index) if isinstance(index, str) else index
    frames = range(n_frames)[selection]
    frames = frames if isinstance(frames, range) else [frames]
    keys = dict(energy="energy", forces="forces", stress="stress")
    units = dict(energy_unit=energy_unit, length_unit=length_unit, forces_unit=forces_unit,
                 stress_unit=None, property_units={})
    for name, array in (("energy", energies), ("forces", forces)):
        if array is not None and len(array) != n_frames:
            raise ValueError(f"{path}: {name}: {len(array)} frames, positions have {n_frames}")
    structures = []
    for frame in frames:
        calc = {}
        if energies is not None:
            calc["energy"] = energies[frame]
        if forces is not None:
            calc["forces"] = forces[frame]
        structures.append(
            _structure(path, frame, numbers[frame], positions[frame], np.zeros((3, 3)),
                       False, [calc], keys, units, {})
        )
    return structures
