import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from euclidnn.data import Structure


def water(**kwargs):
    return Structure(numbers=[8, 1, 1], positions=molecule("H2O").positions, **kwargs)


def test_defaults_and_dtypes():
    s = water()
    assert s.numbers.dtype == np.int64 and s.positions.dtype == np.float64
    assert np.array_equal(s.cell, np.zeros((3, 3))) and s.pbc.tolist() == [False] * 3
    assert s.energy is None and s.forces is None and s.stress is None
    assert Structure([14], [[0, 0, 0]], cell=np.eye(3) * 3, pbc=True).pbc.tolist() == [True] * 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(positions=np.zeros((2, 3))), r"positions: expected shape \[3, 3\], got \[2, 3\]"),
        (dict(forces=np.zeros((3, 2))), r"forces: expected shape \[3, 3\]"),
        (dict(forces=np.full((3, 3), np.nan)), "forces: contains NaN or inf"),
        (dict(energy=np.inf), "energy: contains NaN or inf"),
        (dict(energy=[1.0, 2.0]), r"energy: expected shape \[\]"),
        (dict(stress=np.zeros(5)), r"stress: expected shape \[3, 3\]"),
        (dict(cell=np.eye(2)), r"cell: expected shape \[3, 3\]"),
        (dict(numbers=[8, 1, 0]), "numbers: unknown atomic number 0"),
        (dict(numbers=[8, 1, 119]), "numbers: unknown atomic number 119"),
        (dict(atom_properties={"charges": np.zeros(2)}), r"atom_properties\['charges'\]"),
        (dict(properties={"dipole": [np.nan, 0, 0]}), r"properties\['dipole'\]: contains NaN"),
    ],
)
def test_validation_names_the_field(kwargs, message):
    args = dict(numbers=[8, 1, 1], positions=molecule("H2O").positions)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Structure(**args)


def test_voigt_stress_expanded():
    voigt = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # xx yy zz yz xz xy
    s = Structure([14], [[0, 0, 0]], cell=np.eye(3) * 3, pbc=True, stress=voigt)
    assert s.stress.tolist() == [[1, 6, 5], [6, 2, 4], [5, 4, 3]]


def test_close_atoms_through_periodic_image():
    cell = np.diag([3.0, 3.0, 3.0])
    ok = Structure([1, 1], [[0, 0, 0.2], [0, 0, 2.85]], cell=cell, pbc=True)  # 0.35 Å apart
    assert ok.num_atoms == 2
    with pytest.raises(ValueError, match="periodic image"):
        Structure([1, 1], [[0, 0, 0.02], [0, 0, 2.95]], cell=cell, pbc=True)
    # not periodic along z: the same positions are 2.93 Å apart, fine
    Structure([1, 1], [[0, 0, 0.02], [0, 0, 2.95]], cell=cell, pbc=[True, True, False])


def test_ase_round_trip_with_labels_and_properties():
    rng = np.random.default_rng(0)
    atoms = bulk("NaCl", "rocksalt", a=5.6).repeat(2)
    atoms.rattle(0.05, seed=1)
    atoms.info["charge"] = 0
    atoms.info["config_type"] = "bulk"  # strings are not properties
    atoms.arrays["charges"] = rng.normal(size=len(atoms))
    atoms.calc = SinglePointCalculator(
        atoms, energy=-27.5, forces=rng.normal(size=(len(atoms), 3)), stress=rng.normal(size=6)
    )
    s = Structure.from_ase(atoms)
    assert s.energy == -27.5
    assert np.array_equal(s.forces, atoms.get_forces())
    assert np.array_equal(s.stress, atoms.get_stress(voigt=False))
    assert s.properties == {"charge": 0}
    assert np.array_equal(s.atom_properties["charges"], atoms.arrays["charges"])
    back = s.to_ase()
    assert np.array_equal(back.numbers, atoms.numbers)
    assert np.array_equal(back.positions, atoms.positions)
    assert np.array_equal(back.cell.array, atoms.cell.array)
    assert back.pbc.all()
    assert back.get_potential_energy() == -27.5
    assert np.array_equal(back.get_stress(voigt=False), s.stress)
    assert np.array_equal(back.arrays["charges"], atoms.arrays["charges"])
    # arguments win over the calculator
    assert Structure.from_ase(atoms, energy=1.0).energy == 1.0


def test_from_ase_without_calculator():
    s = Structure.from_ase(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]))
    assert s.energy is None and s.forces is None
    assert s.to_ase().calc is None


def test_from_ase_labels_in_info_and_arrays():
    atoms = molecule("H2O")
    atoms.info["energy"] = -14.2
    atoms.arrays["forces"] = np.ones((3, 3))
    s = Structure.from_ase(atoms)
    assert s.energy == -14.2 and np.array_equal(s.forces, np.ones((3, 3)))
    assert "energy" not in s.properties and "forces" not in s.atom_properties


def test_atoms_on_top_of_each_other_in_a_molecule():
    positions = molecule("H2O").positions.copy()
    positions[2] = positions[0] + [0.0, 0.05, 0.0]
    with pytest.raises(ValueError, match=r"positions: atoms 0 and 2 are 0\.050 Å apart"):
        Structure([8, 1, 1], positions)
    big = np.random.default_rng(0).uniform(0, 30, size=(300, 3))  # the cell-list path (> 256 atoms)
    big[7] = big[3] + [0.01, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"0\.010 Å apart"):
        Structure([1] * 300, big)
