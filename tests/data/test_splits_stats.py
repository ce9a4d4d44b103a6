import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from euclidnn.data import Graph, Structure
from euclidnn.data.splits import split, split_blocks, split_indices
from euclidnn.data.stats import avg_num_neighbors, energy_shifts, force_rms


def test_split_by_count_is_disjoint_seeded_and_nested():
    a = split_indices(100, 30, 10, seed=3)
    assert [len(p) for p in a] == [30, 10, 60]
    assert sorted(a.train + a.valid + a.test) == list(range(100))
    assert a == split_indices(100, 30, 10, seed=3)
    assert a.train != split_indices(100, 30, 10, seed=4).train
    bigger = split_indices(100, 50, 10, n_test=20, seed=3)
    assert bigger.train[:30] == a.train  # learning curves: training sets are nested
    assert bigger.valid == a.valid
    assert len(bigger.test) == 20 and not set(bigger.test) & set(bigger.train)
    items = [f"s{i}" for i in range(100)]
    parts = split(items, 30, 10, seed=3)
    assert parts.train == [items[i] for i in a.train]


def test_split_errors():
    with pytest.raises(ValueError, match="exceeds the 10 structures"):
        split_indices(10, 8, 3)
    with pytest.raises(ValueError, match="n_train"):
        split_indices(10, -1, 3)
    with pytest.raises(ValueError, match="n_test"):
        split_indices(10, 5, 3, n_test=2.5)


def test_split_blocks_contiguous_with_gap():
    frames = list(range(20))
    parts = split_blocks(frames, 10, 3, n_test=4, gap=1)
    assert parts.train == list(range(10))
    assert parts.valid == [11, 12, 13]
    assert parts.test == [15, 16, 17, 18]
    assert split_blocks(frames, 10, 5).test == list(range(15, 20))
    with pytest.raises(ValueError, match="exceeds"):
        split_blocks(frames, 10, 5, n_test=4, gap=1)


def test_energy_shifts_recover_known_per_species_energies():
    rng = np.random.default_rng(0)
    mu = {1: -13.6, 6: -1030.0, 7: -1485.0, 8: -2040.0}
    structures = []
    for name in ["H2O", "CH4", "NH3", "CO2", "C2H6", "HCN", "CH3OH", "N2", "H2"]:
        atoms = molecule(name)
        energy = sum(mu[z] for z in atoms.numbers) + 0.01 * rng.normal()
        structures.append(Structure.from_ase(atoms, energy=energy))
    shifts = energy_shifts(structures)
    assert sorted(shifts) == [1, 6, 7, 8]
    for z in mu:
        assert shifts[z] == pytest.approx(mu[z], abs=0.05)
    with pytest.raises(ValueError, match="no energy"):
        energy_shifts([Structure.from_ase(molecule("H2O"))])


def test_force_rms():
    rng = np.random.default_rng(1)
    forces = [rng.normal(size=(3, 3)) * 2.0, rng.normal(size=(5, 3)) * 2.0]
    structures = [
        Structure.from_ase(molecule("H2O"), forces=forces[0]),
        Structure.from_ase(molecule("CH4"), forces=forces[1]),
    ]
    expected = np.sqrt(np.mean(np.concatenate(forces) ** 2))
    assert force_rms(structures) == pytest.approx(expected)
    with pytest.raises(ValueError, match="no structure has forces"):
        force_rms([Structure.from_ase(molecule("H2O"))])


def test_avg_num_neighbors_structures_and_graphs():
    si = Structure.from_ase(bulk("Si", "diamond", a=5.43))  # 4 neighbours at 2.35 Å
    fcc = Structure.from_ase(bulk("Cu", "fcc", a=3.6))  # 12 neighbours at 2.55 Å
    assert avg_num_neighbors([si], r_max=3.0) == pytest.approx(4.0)
    assert avg_num_neighbors([fcc], r_max=3.0) == pytest.approx(12.0)
    # 2 Si atoms (4 each) + 1 Cu atom (12): 20 edges over 3 atoms
    assert avg_num_neighbors([si, fcc], r_max=3.0) == pytest.approx(20 / 3)
    graph = Graph.from_structures([si, fcc], r_max=3.0, dtype=torch.float64)
    assert avg_num_neighbors(graph) == pytest.approx(20 / 3)
    assert avg_num_neighbors([graph, graph]) == pytest.approx(20 / 3)
    with pytest.raises(ValueError, match="r_max is required"):
        avg_num_neighbors([si])
