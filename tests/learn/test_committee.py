"""The committee's mean and σ against a hand computation, its calculator, and the rank
correlation that judges σ."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from euclidnn.data.graph import Graph
from euclidnn.data.structure import Structure
from euclidnn.learn import CommitteeCalculator, committee_predict, committee_statistics
from euclidnn.learn.committee import per_frame_force_error
from euclidnn.learn.report import spearman
from euclidnn.models import SchNet, SchNetConfig, predict


def test_sigma_matches_a_hand_computation():
    # K = 3 members, two graphs: atoms 0, 1 in graph 0, atom 2 in graph 1
    forces = torch.tensor(
        [
            [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [2.0, 2.0, 0.0]],
            [[-1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [2.0, 2.0, 0.0]],
            [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [2.0, 2.0, 3.0]],
        ],
        dtype=torch.float64,
    )
    energies = torch.tensor([[1.0, 5.0], [2.0, 5.0], [3.0, 8.0]], dtype=torch.float64)
    out = committee_statistics(energies, forces, torch.tensor([0, 0, 1]))
    # atom 0: x = (1, -1, 0), mean 0, population variance 2/3; y, z constant
    # atom 1: y = (0, 3, 0), mean 1, variance (1 + 4 + 1)/3 = 2
    # atom 2: z = (0, 0, 3), mean 1, variance 2
    expected_atoms = [np.sqrt(2 / 3), np.sqrt(2.0), np.sqrt(2.0)]
    np.testing.assert_allclose(out.atom_sigma, expected_atoms, rtol=1e-12)
    np.testing.assert_allclose(out.sigma_forces, [np.sqrt(2.0), np.sqrt(2.0)], rtol=1e-12)
    np.testing.assert_allclose(out.energy, [2.0, 6.0])
    np.testing.assert_allclose(out.energy_std, [np.sqrt(2 / 3), np.sqrt(2.0)], rtol=1e-12)
    np.testing.assert_allclose(out.forces[1], [0.0, 1.0, 0.0])


def test_sigma_is_the_norm_of_the_per_component_std_and_rotation_invariant():
    generator = torch.Generator().manual_seed(1)
    forces = torch.randn(4, 5, 3, generator=generator, dtype=torch.float64)
    batch = torch.zeros(5, dtype=torch.int64)
    out = committee_statistics(torch.zeros(4, 1, dtype=torch.float64), forces, batch)
    by_hand = np.sqrt((forces.numpy().std(0) ** 2).sum(-1))  # numpy std: population (1/K)
    np.testing.assert_allclose(out.atom_sigma, by_hand, rtol=1e-12)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    rotated = committee_statistics(
        torch.zeros(4, 1, dtype=torch.float64), forces @ rotation.T, batch
    )
    np.testing.assert_allclose(rotated.sigma_forces, out.sigma_forces, rtol=1e-10)


def _members(k=3):
    torch.manual_seed(0)
    config = SchNetConfig(species=(1, 8), num_features=8, num_interactions=1)
    return [SchNet(config).double() for _ in range(k)]


def test_committee_predict_combines_the_members_predictions():
    members = _members()
    graph = Graph.from_structure(Structure.from_ase(molecule("H2O")), 5.0, torch.float64)
    out = committee_predict(members, graph)
    each = [predict(m, graph) for m in members]
    mean = torch.stack([p.forces for p in each]).mean(0)
    np.testing.assert_allclose(out.forces, mean.detach(), rtol=1e-12)
    assert out.sigma_forces.shape == (1,) and float(out.sigma_forces[0]) > 0
    with pytest.raises(ValueError, match="at least 2"):
        committee_predict(members[:1], graph)


def test_the_calculator_moves_on_the_mean_and_records_sigma_per_call():
    members = _members()
    atoms = molecule("H2O")
    atoms.calc = CommitteeCalculator(members)
    forces = atoms.get_forces()
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    assert len(atoms.calc.sigmas) == 2
    assert atoms.calc.results["sigma_forces"] == atoms.calc.sigmas[-1]
    graph = Graph.from_structure(Structure.from_ase(molecule("H2O")), 5.0, torch.float64)
    np.testing.assert_allclose(forces, committee_predict(members, graph).forces, atol=1e-10)


def test_per_frame_error_and_spearman():
    predicted = np.zeros((3, 3))
    reference = np.array([[0.0, 3.0, 4.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    np.testing.assert_allclose(
        per_frame_force_error(predicted, reference, np.array([0, 0, 1])), [5.0, 2.0]
    )
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    assert spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 − 6·2/(4·15)
    assert np.isnan(spearman([1, 1], [1, 2]))
