r"""Symmetrize a structure to its group: every atom becomes the average of its orbit.

Point groups: x̄_i = c + (1/|G|) Σ_g R_gᵀ (x_π_g(i) − c). Space groups, in fractional
coordinates with W_g f_i + t_g = f_π_g(i) + n_gi (n_gi a lattice vector):
f̄_i = (1/|G|) Σ_g W_g⁻¹ (f_π_g(i) + n_gi − t_g), and the cell's metric is averaged too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from euclidnn.data.structure import Structure
from euclidnn.symmetry.detect import DEFAULT_TOLERANCE, numbers_and_positions, point_group
from euclidnn.symmetry.detect import symmetrized_positions as _orbit_average
from euclidnn.symmetry.groups import Symmetry
from euclidnn.symmetry.space import _atom_images, cell_of, space_group

__all__ = ["Symmetrized", "symmetrize"]


@dataclass(frozen=True, eq=False)
class Symmetrized:
    """A structure moved onto its group's exact symmetry.

    Attributes:
        structure: the symmetrized :class:`~euclidnn.data.Structure` (no labels).
        group: the group it was symmetrized to.
        displacements: how far each atom moved, Å. Shapes: [n_atoms, 3]
        max_displacement: the largest |displacement|, Å.
    """

    structure: Structure
    group: Symmetry
    displacements: np.ndarray
    max_displacement: float


def _is_periodic(structure) -> bool:
    return bool(np.all(np.asarray(structure.pbc))) if hasattr(structure, "pbc") else False


def _symmetrized_cell(cell: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """The cell whose metric G = L Lᵀ is averaged over the elements, G' = (1/|G|) Σ_g W_gᵀ G W_g,
    in the orientation of the old one: L' = G'^½ G^-½ L."""
    metric = cell @ cell.T
    averaged = np.einsum("gba,bc,gcd->ad", rotations, metric, rotations) / len(rotations)

    def power(matrix: np.ndarray, exponent: float) -> np.ndarray:
        values, vectors = np.linalg.eigh(matrix)
        return (vectors * values**exponent) @ vectors.T

    return power(averaged, 0.5) @ power(metric, -0.5) @ cell


def symmetrize(
    structure, group: Symmetry | None = None, tolerance: float | None = None
) -> Symmetrized:
    """Average every atom over its orbit under ``group`` (detected if not given).

    Args:
        structure: a :class:`~euclidnn.data.Structure` or ``ase.Atoms``; periodic in 3D → its
            space group (spglib), otherwise its point group.
        group: the group to symmetrize to, e.g. a subgroup; default: detected.
        tolerance: Å, for the detection (default :data:`DEFAULT_TOLERANCE` for molecules,
            1e-3 for crystals).

    >>> from ase.build import molecule
    >>> water = molecule("H2O")
    >>> water.positions[1] += [0.0, 0.02, 0.0]  # one O–H 0.02 Å too long
    >>> result = symmetrize(water)
    >>> result.group.name, round(result.max_displacement, 3)
    ('C2v', 0.007)
    """
    numbers, positions = numbers_and_positions(structure)
    periodic = _is_periodic(structure)
    if group is None:
        if periodic:
            group = space_group(structure, 1e-3 if tolerance is None else tolerance)
        else:
            group = point_group(structure, DEFAULT_TOLERANCE if tolerance is None else tolerance)
    if group.permutations.shape[1] != len(numbers):
        raise ValueError(
            f"group: permutes {group.permutations.shape[1]} atoms, the structure has {len(numbers)}"
        )
    if group.is_space_group:
        cell, fractional, _ = cell_of(structure)
        rotations = np.einsum("ia,gab,bj->gij", np.linalg.inv(cell).T, group.operations, cell.T)
        translations = group.translations @ np.linalg.inv(cell)
        permutations, offsets = _atom_images(fractional, rotations, translations)
        moved = fractional[permutations] + offsets - translations[:, None]  # [g, n, 3]
        averaged = np.einsum("gab,gnb->na", np.linalg.inv(rotations), moved) / group.order
        cell = _symmetrized_cell(cell, rotations)
        new_positions = averaged @ cell
        new = Structure(numbers=numbers, positions=new_positions, cell=cell, pbc=True)
    else:
        x = positions - group.center
        new_positions = group.center + _orbit_average(x, group.operations, group.permutations)
        new = Structure(numbers=numbers, positions=new_positions)
    displacements = new_positions - positions
    return Symmetrized(
        new, group, displacements, float(np.linalg.norm(displacements, axis=1).max())
    )
