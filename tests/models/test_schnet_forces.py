"""SchNet.energy_and_forces (hand-written derivatives, used by predict for inference) against autograd."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk, molecule

import euclidnn.models.schnet
import euclidnn.nn.conv
from euclidnn.data import Graph
from euclidnn.models import SchNet, SchNetConfig, predict


@pytest.mark.parametrize(
    "pair_min,native_min",
    [(10**9, 10**9), (0, 10**9), (0, 0)],
    ids=["per-edge", "pairs", "pairs+kernel"],
)
@pytest.mark.parametrize("periodic", [False, True])
def test_matches_autograd(pair_min, native_min, periodic, monkeypatch):
    monkeypatch.setattr(euclidnn.models.schnet, "PAIR_MIN_EDGES", pair_min)
    monkeypatch.setattr(euclidnn.nn.conv, "NATIVE_MIN_EDGES", native_min)
    torch.manual_seed(0)
    config = SchNetConfig(
        species=(1, 6, 8, 14),
        num_features=16,
        num_basis=12,
        energy_scales=(0.7, 1.1, 0.9, 1.3),
        energy_shifts=(-1.0, -2.0, -3.0, -4.0),
    )
    model = SchNet(config).double()
    structures = (
        [molecule("CH3CH2OH"), bulk("Si") * (2, 1, 1)] if periodic else molecule("CH3CH2OH")
    )
    graph = Graph.from_ase(structures, 5.0, torch.float64)
    reference = predict(model, graph, training=True)  # autograd through forward()
    energy, forces = model.energy_and_forces(graph)
    torch.testing.assert_close(energy, reference.energy, rtol=0, atol=1e-12)
    torch.testing.assert_close(forces, reference.forces, rtol=0, atol=1e-12)
    assert forces.abs().max() > 1e-2  # not vacuous
    fast = predict(model, graph)  # inference goes through energy_and_forces
    assert torch.equal(fast.forces, forces)
