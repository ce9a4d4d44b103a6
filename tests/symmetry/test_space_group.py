"""Space groups through spglib, as Symmetry values in the input's Cartesian frame."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from euclidnn.data import Structure
from euclidnn.symmetry import point_group_operations, schoenflies_name, space_group


def _perovskite() -> Atoms:
    return Atoms(
        "SrTiO3",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        cell=np.eye(3) * 3.905,
        pbc=True,
    )


@pytest.mark.parametrize(
    "atoms, number, crystal_class",
    [
        (bulk("NaCl", "rocksalt", a=5.64), 225, "Oh"),
        (bulk("Si", "diamond", a=5.43), 227, "Oh"),
        (bulk("Mg", "hcp", a=3.21, c=5.21), 194, "D6h"),
        (_perovskite(), 221, "Oh"),
    ],
)
def test_known_crystals(atoms, number, crystal_class):
    group = space_group(atoms)
    assert group.number == number
    assert schoenflies_name(group.operations) == crystal_class
    # every element maps every atom onto an atom of the same element, up to a lattice vector
    images = group.apply(atoms.positions)
    difference = images - atoms.positions[group.permutations]
    fractional = difference @ np.linalg.inv(atoms.cell[:])
    assert np.abs(fractional - np.round(fractional)).max() < 1e-8
    assert (atoms.numbers[group.permutations] == atoms.numbers).all()


def test_rotated_cell_gives_rotated_elements():
    atoms = _perovskite()
    rotated = atoms.copy()
    rotated.rotate(30, "z", rotate_cell=True)
    group, rotated_group = space_group(atoms), space_group(Structure.from_ase(rotated))
    assert rotated_group.number == 221
    R = rotated.cell[:].T @ np.linalg.inv(atoms.cell[:].T)
    expected = np.einsum("ab,gbc,dc->gad", R, group.operations, R)
    assert (
        np.abs(expected[:, None] - rotated_group.operations[None]).max((-1, -2)).min(1).max()
        < 1e-10
    )
    assert len(point_group_operations("Oh")) == rotated_group.order


def test_molecule_is_rejected():
    with pytest.raises(ValueError, match="pbc"):
        space_group(molecule("H2O"))
