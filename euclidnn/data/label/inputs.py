"""Checks of the structure a label run starts from, each refusal naming the structure: finite
coordinates, no atoms on top of each other, a cell periodic in all three directions or none."""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_DISTANCE", "check_structure"]

#: Å; two atoms closer than this (periodic images included) are refused. The shortest bond
#: there is, H–H, is 0.74 Å; closer atoms are a broken input, and xTB or DFT on them fails or
#: returns nonsense.
MIN_DISTANCE = 0.5


def check_structure(atoms, name) -> None:
    """Raise ValueError, naming ``name``, for a structure that cannot be labelled.

    >>> from ase import Atoms
    >>> check_structure(Atoms("H2", [[0, 0, 0], [0, 0, 0.1]]), "h2.xyz")
    Traceback (most recent call last):
    ...
    ValueError: h2.xyz: atoms 0 (H) and 1 (H) are 0.100 Å apart (< 0.5 Å): atoms on top of each other
    """
    from ase.neighborlist import neighbor_list

    if len(atoms) == 0:
        raise ValueError(f"{name}: no atoms")
    finite = np.isfinite(atoms.positions).all(axis=1)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"{name}: atom {index} ({atoms[index].symbol}): coordinates are not finite "
            f"({', '.join(f'{x:g}' for x in atoms.positions[index])})"
        )
    if atoms.pbc.any():
        _check_cell(atoms, name)
    first, second, distance = neighbor_list("ijd", atoms, MIN_DISTANCE)
    if len(distance):
        k = int(np.argmin(distance))
        i, j = sorted((int(first[k]), int(second[k])))
        other = "its own periodic image" if i == j else f"{j} ({atoms[j].symbol})"
        raise ValueError(
            f"{name}: atoms {i} ({atoms[i].symbol}) and {other} are {distance[k]:.3f} Å apart "
            f"(< {MIN_DISTANCE} Å): atoms on top of each other"
        )


def _check_cell(atoms, name) -> None:
    """A periodic structure needs a finite cell with volume, periodic in all three directions
    (tblite treats any periodic structure as 3D-periodic)."""
    pbc = " ".join("T" if p else "F" for p in atoms.pbc)
    if not atoms.pbc.all():
        raise ValueError(
            f'{name}: pbc="{pbc}": periodic in some directions only, which xTB (tblite) '
            "treats as 3D-periodic; make it periodic in all three (a slab: a vacuum layer) "
            "or in none"
        )
    cell = np.asarray(atoms.cell)
    if not np.isfinite(cell).all() or abs(np.linalg.det(cell)) < 1e-6:
        raise ValueError(
            f"{name}: periodic, but its cell {cell.round(6).tolist()} has no volume; give "
            'three lattice vectors (extxyz: Lattice="ax ay az bx by bz cx cy cz")'
        )
