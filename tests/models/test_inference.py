"""Inference (predict with training=False) sees every change of the weights, however made."""

from __future__ import annotations

import copy

import pytest
import torch
from ase.build import molecule

from euclidnn.data import Graph
from euclidnn.models import NequIP, NequIPConfig, SchNet, SchNetConfig, predict


@pytest.mark.parametrize(
    "make",
    [
        lambda: SchNet(SchNetConfig(species=(1, 6, 8), num_features=16, num_basis=8)),
        lambda: NequIP(NequIPConfig(species=(1, 6, 8), num_features=8, num_layers=2)),
    ],
    ids=["schnet", "nequip"],
)
def test_weights_changed_through_data_are_seen(make):
    torch.manual_seed(0)
    model = make().double()
    graph = Graph.from_ase(molecule("CH3CH2OH"), 5.0, torch.float64)
    before = predict(model, graph)
    for p in model.parameters():
        p.data.mul_(1.1)  # leaves p._version alone: nothing may be cached on it
    after = predict(model, graph)
    fresh = copy.deepcopy(model)
    reference = predict(fresh, graph, training=True)
    assert not torch.allclose(before.forces, after.forces)
    torch.testing.assert_close(after.energy, reference.energy, rtol=0, atol=1e-10)
    torch.testing.assert_close(after.forces, reference.forces, rtol=0, atol=1e-10)
    assert all(p.requires_grad for p in model.parameters())  # predict restored them
