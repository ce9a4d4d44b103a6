"""Point-group detection: the acceptance table, in any frame, any atom order, with noise."""

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from symmetry_molecules import table

from euclidnn.data import Structure, read
from euclidnn.symmetry import (
    generate_group,
    point_group,
    point_group_operations,
    rotation_matrix,
    schoenflies_name,
)

TABLE = table()
IDS = [row[0] for row in TABLE]
SHIPPED = Path(__file__).parents[2] / "euclidnn" / "data" / "shipped" / "molecules"


def _random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q * np.linalg.det(q)


def _moved(atoms: Atoms, rng, noise: float) -> Atoms:
    """Rotated, translated, atoms permuted, and Gaussian noise (σ per coordinate) added."""
    order = rng.permutation(len(atoms))
    positions = atoms.positions[order] @ _random_rotation(rng).T + rng.normal(size=3) * 5
    return Atoms(atoms.numbers[order], positions + rng.normal(0, noise, positions.shape))


def _assert_consistent(group, atoms: Atoms, atol: float) -> None:
    """The elements form a group and move atom i onto atom permutations[g, i] within atol."""
    ops = group.operations
    products = np.einsum("gab,hbc->ghac", ops, ops).reshape(-1, 1, 9)
    assert np.abs(products - ops.reshape(1, -1, 9)).max(-1).min(-1).max() < 1e-12
    assert np.allclose(
        np.einsum("gab,hcb->ghac", ops, ops)[np.arange(len(ops)), np.arange(len(ops))], np.eye(3)
    )
    images = group.apply(atoms.positions)
    targets = atoms.positions[group.permutations]
    assert np.abs(images - targets).max() < atol
    assert (atoms.numbers[group.permutations] == atoms.numbers).all()


@pytest.mark.parametrize("label, atoms, name, order", TABLE, ids=IDS)
def test_table(label, atoms, name, order):
    group = point_group(atoms)
    assert (group.name, group.order) == (name, order)
    _assert_consistent(group, atoms, atol=0.02)  # ase's C60 is Ih to 0.01 Å only


@pytest.mark.parametrize("label, atoms, name, order", TABLE, ids=IDS)
def test_table_rotated_permuted_noisy(label, atoms, name, order):
    rng = np.random.default_rng(sum(map(ord, label)))
    for noise in (0.0, 0.01):
        moved = _moved(atoms, rng, noise)
        group = point_group(moved)
        assert (group.name, group.order) == (name, order), f"noise {noise}"
        _assert_consistent(group, moved, atol=0.15 if noise else 0.02)


@pytest.mark.parametrize(
    "name",
    ["C1", "Cs", "Ci", "C2", "C3", "C5", "C8", "C2v", "C4v", "C8v", "C2h", "C3h", "C6h", "C8h"]
    + ["D2", "D3", "D7", "D8", "D2h", "D4h", "D8h", "D2d", "D3d", "D8d", "S4", "S6", "S8"]
    + ["T", "Td", "Th", "O", "Oh", "I", "Ih"],
)
def test_names_of_generated_groups(name):
    rng = np.random.default_rng(len(name))
    frame = _random_rotation(rng)
    ops = frame @ point_group_operations(name) @ frame.T
    assert schoenflies_name(ops) == name


@pytest.mark.parametrize("name", ["C3v", "D4h", "D3d", "S4", "Td", "Th", "Oh", "Ih", "D5h", "C8h"])
def test_orbit_of_a_generic_point_has_the_group(name):
    """The orbits of two generic points under G (one orbit alone can have more symmetry: the
    four points of an S4 orbit have D2d) have group G."""
    ops = point_group_operations(name)
    first = np.einsum("gab,b->ga", ops, [2.2, 0.8, 1.4])
    second = np.einsum("gab,b->ga", ops, [-0.5, 2.6, 0.9])
    atoms = Atoms(["C"] * len(ops) + ["N"] * len(ops), np.concatenate([first, second]))
    group = point_group(atoms)
    assert (group.name, group.order) == (name, len(ops))


def test_shipped_molecules():
    expected = {"benzene": "D6h", "water": "C2v", "naphthalene": "D2h", "uracil": "Cs"}
    for name, group_name in expected.items():
        structure = read(SHIPPED / f"{name}.xyz")[0]
        assert point_group(structure).name == group_name
        assert point_group(structure, tolerance=0.01).name == group_name


def test_file_precision_and_structure_input():
    """Coordinates rounded to 4 decimals, given as a Structure."""
    c60 = molecule("C60")
    structure = Structure(numbers=c60.numbers, positions=np.round(c60.positions, 4))
    assert point_group(structure).name == "Ih"


def test_distortion_gives_the_subgroup():
    """Benzene stretched 0.3 Å along one C2 axis keeps D2h of D6h; square → rectangle D4h → D2h."""
    benzene = molecule("C6H6")
    benzene.positions[:, 0] *= 1.1
    assert point_group(benzene).name == "D2h"
    square = Atoms("C4", [[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]])
    assert point_group(square).name == "D4h"
    square.positions[:, 0] *= 1.3
    assert point_group(square).name == "D2h"


@pytest.mark.parametrize("noise", [0.03, 0.08, 0.2, 0.5])
def test_heavy_noise_degrades_to_a_subgroup(noise):
    """Never a supergroup: the group found is a subgroup (its order divides the true order) and,
    for moderate noise, every element is close to an element of the true group (water is left
    out there: three atoms always span an exact mirror plane, which the noise tilts)."""
    rng = np.random.default_rng(int(noise * 100))
    for label, atoms, _, order in TABLE[:12]:
        positions = atoms.positions + rng.normal(0, noise, atoms.positions.shape)
        group = point_group(Atoms(atoms.numbers, positions))
        true_ops = point_group(atoms).operations
        assert group.order <= order, label
        assert order % group.order == 0, label
        if noise > 0.1 or label == "water":
            continue
        distance = np.abs(group.operations[:, None] - true_ops[None]).max((-1, -2)).min(1)
        assert distance.max() < 0.3, label


def test_tolerance_decides():
    """A 0.05 Å distortion of NH3 is C3v at the default tolerance and Cs at 0.01 Å."""
    ammonia = molecule("NH3")
    ammonia.positions[1] *= 1.05
    assert point_group(ammonia).name == "C3v"
    assert point_group(ammonia, tolerance=0.01).name == "Cs"


def test_generate_group_and_rotation_matrix():
    group = generate_group([rotation_matrix([1, 1, 1], 2 * np.pi / 3), -np.eye(3)])
    assert len(group) == 6 and schoenflies_name(group) == "S6"
    with pytest.raises(ValueError, match="generators"):
        generate_group([rotation_matrix([0, 0, 1], 1.0)])


def test_errors_name_the_input():
    with pytest.raises(ValueError, match="structure"):
        point_group([1, 2, 3])
    with pytest.raises(ValueError, match="tolerance"):
        point_group(molecule("H2O"), tolerance=0.0)
    with pytest.raises(ValueError, match="name"):
        point_group_operations("X3")


def test_against_pymatgen():
    """pymatgen's PointGroupAnalyzer (test-only reference) agrees on the table."""
    pymatgen = pytest.importorskip("pymatgen.symmetry.analyzer")
    from pymatgen.core import Molecule

    for label, atoms, name, _ in TABLE:
        mol = Molecule(atoms.get_chemical_symbols(), atoms.positions)
        theirs = str(pymatgen.PointGroupAnalyzer(mol).sch_symbol)
        assert theirs.replace("*", "inf") == name, label


def test_linear_molecules_have_finite_stand_ins():
    """Cinfv / Dinfh come with C16v / D16h about the molecular axis; a single atom is Kh."""
    for name, finite in (("CO2", "D16h"), ("HCN", "C16v")):
        atoms = molecule(name)
        atoms.rotate(33, (1, 2, 0))
        group = point_group(atoms)
        assert schoenflies_name(group.operations) == finite
        axis = atoms.positions[1] - atoms.positions[0]
        assert np.allclose(np.einsum("gab,b->ga", group.operations[:16], axis), axis)
    assert point_group(Atoms("Ar", [[1.0, 2.0, 3.0]])).name == "Kh"
