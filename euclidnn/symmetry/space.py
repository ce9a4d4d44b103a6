r"""Space groups of crystals through spglib, as the same :class:`Symmetry` as point groups.

spglib returns each element as an integer matrix W and a translation t acting on fractional
coordinates, f ↦ W f + t. With the lattice vectors as the rows of L (x = Lᵀ f), the Cartesian
element is R = Lᵀ W L⁻ᵀ with translation Lᵀ t. The rotations R_g form the crystal's point
group (the crystal class), which is what selection rules for tensor properties need.
"""

from __future__ import annotations

import warnings

import numpy as np

from euclidnn.symmetry.groups import Symmetry

__all__ = ["DEFAULT_SYMPREC", "cell_of", "space_group"]

#: Å, spglib's distance tolerance: positions from files and relaxations.
DEFAULT_SYMPREC = 1e-3


def cell_of(structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell [3, 3] Å, fractional positions [n, 3], numbers [n]) of a periodic Structure or
    ``ase.Atoms``; raises ``ValueError`` naming the field if it is not periodic in 3D."""
    if hasattr(structure, "get_cell"):  # ase.Atoms
        cell, pbc = np.asarray(structure.get_cell()), np.asarray(structure.pbc)
        positions, numbers = structure.get_positions(), structure.get_atomic_numbers()
    else:
        cell, pbc = np.asarray(structure.cell), np.asarray(structure.pbc)
        positions, numbers = structure.positions, structure.numbers
    if not np.all(pbc) or abs(np.linalg.det(cell)) < 1e-8:
        raise ValueError(
            f"structure.pbc: space groups need a cell periodic in all three directions, got pbc={pbc.tolist()}"
        )
    fractional = np.asarray(positions, dtype=np.float64) @ np.linalg.inv(cell)
    return cell.astype(np.float64), fractional, np.asarray(numbers, dtype=np.int64)


def _atom_images(fractional, rotations, translations):
    """permutations [g, n] and lattice offsets [g, n, 3]: W_g f_i + t_g = f_π(i) + n_gi."""
    images = np.einsum("gab,nb->gna", rotations, fractional) + translations[:, None]
    difference = images[:, :, None, :] - fractional[None, None, :, :]  # [g, n, m, 3]
    wrapped = difference - np.round(difference)
    permutations = np.linalg.norm(wrapped, axis=-1).argmin(-1)
    offsets = np.round(np.take_along_axis(difference, permutations[..., None, None], 2)[:, :, 0])
    return permutations, offsets


def space_group(structure, tolerance: float = DEFAULT_SYMPREC) -> Symmetry:
    """The space group of a crystal (spglib), with Cartesian elements and atom permutations.

    Args:
        structure: a periodic :class:`~euclidnn.data.Structure` or ``ase.Atoms``.
        tolerance: Å, spglib's ``symprec`` (default 1e-3).

    Returns:
        :class:`Symmetry` named by the Hermann–Mauguin symbol, with ``number`` 1–230; element
        g maps x to R_g x + t_g (``center`` = 0).

    Shapes: → operations: [order, 3, 3], translations: [order, 3], permutations: [order, n_atoms]

    >>> from ase.build import bulk
    >>> group = space_group(bulk("NaCl", "rocksalt", a=5.64))
    >>> group.name, group.number, group.order
    ('Fm-3m', 225, 48)
    """
    import spglib

    cell, fractional, numbers = cell_of(structure)
    with warnings.catch_warnings():  # spglib 2.x warns about its own error-handling switch
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = spglib.get_symmetry_dataset((cell, fractional, numbers), symprec=tolerance)
    if dataset is None:
        raise ValueError(f"structure: spglib found no space group within tolerance {tolerance} Å")
    rotations = np.asarray(dataset.rotations, dtype=np.float64)
    translations = np.asarray(dataset.translations, dtype=np.float64)
    permutations, _ = _atom_images(fractional, rotations, translations)
    operations = np.einsum("ia,gab,bj->gij", cell.T, rotations, np.linalg.inv(cell).T)
    return Symmetry(
        name=str(dataset.international),
        operations=operations,
        permutations=permutations.astype(np.int64),
        center=np.zeros(3),
        translations=translations @ cell,
        number=int(dataset.number),
        tolerance=tolerance,
    )
