"""The shipped data sets load in eV/Å with their recorded size, and their labels are right."""

import ase.io
import numpy as np
import pytest

from euclidnn.data.datasets import DATASETS, dataset_info, list_datasets, load_dataset
from euclidnn.data.label import Level, load_molecule, make_labeller

SHIPPED = list_datasets()


def test_the_md17_xtb_sets_are_shipped():
    assert "ethanol" in SHIPPED
    assert all(DATASETS[name].level_of_theory for name in SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_set_loads_with_recorded_size_and_finite_labels(name):
    info = dataset_info(name)
    structures = load_dataset(name)
    if info.level_of_theory != "GFN2-xTB" and len(structures) < info.num_frames:
        # the DFT run is resumable and may have been shipped part-way (see shipped/README.md)
        assert len(structures) > 0
    else:
        assert len(structures) == info.num_frames
    start = load_molecule(name.split("-")[0])
    for s in structures:
        assert np.array_equal(np.sort(s.numbers), np.sort(start.numbers))
        assert np.isfinite(s.energy) and s.forces.shape == (s.num_atoms, 3)
        assert np.all(np.isfinite(s.forces))
    energies = np.array([s.energy for s in structures])
    if len(energies) < 10:
        return
    # thermal fluctuations at 500 K: a few tenths of an eV, not a broken trajectory
    assert 0.02 < energies.std() < 0.1 * s.num_atoms
    # forces of a free molecule sum to zero (up to DFT grid error)
    assert max(np.abs(s.forces.sum(axis=0)).max() for s in structures) < 1e-2
    frames = ase.io.read(info.path, index="0")
    assert frames.info["level_of_theory"] == info.level_of_theory
    assert frames.info["energy_unit"] == "eV"
    assert frames.info["sampling_temperature_K"] == 500.0


@pytest.mark.parametrize("name", [n for n in SHIPPED if DATASETS[n].level_of_theory == "GFN2-xTB"])
def test_xtb_labels_reproduce_and_are_gradients(name):
    pytest.importorskip("tblite")
    structure = load_dataset(name)[-1]
    atoms = ase.Atoms(numbers=structure.numbers, positions=structure.positions)
    labeller = make_labeller(Level("gfn2-xtb"))
    energy, forces = labeller(atoms)
    assert abs(energy - structure.energy) < 1e-5
    assert np.allclose(forces, structure.forces, atol=1e-3)  # tblite's SCF tolerance
    h, atom = 1e-3, 0
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[atom, 0] += h
    minus.positions[atom, 0] -= h
    fd = -(labeller(plus)[0] - labeller(minus)[0]) / (2 * h)
    assert abs(fd - structure.forces[atom, 0]) < 1e-3


def test_unknown_dataset_names_the_shipped_ones():
    with pytest.raises(ValueError, match="unknown data set 'md22'.*ethanol"):
        load_dataset("md22")
