"""The shipped data sets load in eV/Å with their recorded size, and their labels are right."""

import functools
import gzip
import io

import ase.io
import numpy as np
import pytest

from euclidnn.data import Structure
from euclidnn.data.datasets import DATASETS, dataset_info, list_datasets, load_dataset
from euclidnn.data.label import Level, load_molecule, make_labeller
from euclidnn.data.readers import iread

# one molecule each (the many-element set has its own tests: test_many_elements.py)
SHIPPED = [name for name in list_datasets() if name != "many-elements"]


@functools.cache
def load(name):
    return load_dataset(name)


def test_the_md17_xtb_sets_are_shipped():
    md17 = [
        "ethanol",
        "malonaldehyde",
        "benzene",
        "toluene",
        "uracil",
        "naphthalene",
        "salicylic_acid",
        "aspirin",
    ]
    assert set(md17) <= set(SHIPPED)
    assert all(DATASETS[name].level_of_theory for name in SHIPPED)


def frames_text(name):
    """(frame count, last frame as ase.Atoms) read quickly from the shipped file."""
    path = dataset_info(name).path
    text = (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)).read()
    lines = text.splitlines(keepends=True)
    num_atoms = int(lines[0])
    assert len(lines) % (num_atoms + 2) == 0, f"{path}: not a whole number of frames"
    last = ase.io.read(io.StringIO("".join(lines[-(num_atoms + 2) :])), format="extxyz")
    return len(lines) // (num_atoms + 2), last


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_set_has_its_recorded_size_and_settings(name):
    info = dataset_info(name)
    count, last = frames_text(name)
    if info.level_of_theory == "GFN2-xTB":
        assert count == info.num_frames
    else:  # the resumable DFT run may have been shipped part-way (see shipped/README.md)
        assert 0 < count <= info.num_frames
    assert last.info["level_of_theory"] == info.level_of_theory
    assert last.info["sampling_frame"] == count - 1
    assert last.info["md_step"] == 1000 + 10 * count
    start = load_molecule(name.split("-")[0])
    assert np.array_equal(np.sort(last.numbers), np.sort(start.numbers))


SLOW_UNLESS_ETHANOL = [
    n if n == "ethanol" else pytest.param(n, marks=pytest.mark.slow) for n in SHIPPED
]


@pytest.mark.parametrize("name", SLOW_UNLESS_ETHANOL)
def test_shipped_set_loads_with_recorded_size_and_finite_labels(name):
    info = dataset_info(name)
    structures = load(name)
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
    frames = next(iread(info.path))  # ase.io.read(…, index=0) seeks through the gzip: 15 s
    assert frames.info["level_of_theory"] == info.level_of_theory
    assert frames.info["energy_unit"] == "eV"
    assert frames.info["sampling_temperature_K"] == 500.0


@pytest.mark.parametrize("name", [n for n in SHIPPED if DATASETS[n].level_of_theory == "GFN2-xTB"])
def test_xtb_labels_reproduce_and_are_gradients(name):
    pytest.importorskip("tblite")
    atoms = frames_text(name)[1]
    structure = Structure(
        atoms.numbers,
        atoms.positions,
        energy=atoms.get_potential_energy(),
        forces=atoms.get_forces(),
    )
    atoms.calc = None
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


def test_sampled_trajectory_has_the_thermostat_temperature():
    """The kept MD frames (with momenta) of the DFT set average to the Langevin temperature."""
    from ase import units

    path = dataset_info("ethanol-pbe").path.with_name("ethanol-pbe-def2svp.xyz.sampled.xyz")
    if not path.is_file():
        pytest.skip("the sampled trajectory is removed once the DFT set is finished")
    frames = ase.io.read(path, index=":")
    assert len(frames) == DATASETS["ethanol-pbe"].num_frames
    kinetic = [0.5 * (a.get_momenta() ** 2 / a.get_masses()[:, None]).sum() for a in frames]
    degrees_of_freedom = 3 * len(frames[0]) - 3  # the centre of mass is fixed
    temperature = 2 * np.mean(kinetic) / (degrees_of_freedom * units.kB)
    # 500 frames 5 fs apart with a 100 fs thermostat time: ~50 independent samples of a
    # 24-degree-of-freedom temperature (relative spread 0.29) -> standard error ~4 %
    assert abs(temperature / frames[0].info["sampling_temperature_K"] - 1) < 0.15
