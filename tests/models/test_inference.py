"""Inference (predict with training=False) sees every change of the weights, however made."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from ase.build import molecule

from euclidnn.data import Graph
from euclidnn.models import (
    Allegro,
    AllegroConfig,
    NequIP,
    NequIPConfig,
    SchNet,
    SchNetConfig,
    predict,
)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SchNet(SchNetConfig(species=(1, 6, 8), num_features=16, num_basis=8)),
        lambda: NequIP(NequIPConfig(species=(1, 6, 8), num_features=8, num_layers=2)),
        lambda: Allegro(AllegroConfig(species=(1, 6, 8), num_tensor_features=4, latent_dim=8)),
    ],
    ids=["schnet", "nequip", "allegro"],
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
    assert all(p.requires_grad for p in model.parameters())


def _schnet():
    torch.manual_seed(0)
    return SchNet(SchNetConfig(species=(1, 6, 8), num_features=16, num_basis=8)).double()


def _nequip():
    torch.manual_seed(0)
    return NequIP(NequIPConfig(species=(1, 6, 8), num_features=8, num_layers=2)).double()


def _allegro():
    torch.manual_seed(0)
    return Allegro(AllegroConfig(species=(1, 6, 8), num_tensor_features=4, latent_dim=8)).double()


@pytest.mark.parametrize("make", [_schnet, _nequip, _allegro], ids=["schnet", "nequip", "allegro"])
def test_int32_edges_give_the_same_prediction(make):
    """The issue's reproduction: int32 edge indices crashed the process in the C kernels."""
    model = make()
    graph = Graph.from_ase([molecule("CH3CH2OH"), molecule("H2O")], 5.0, torch.float64)
    narrow = dataclasses.replace(
        graph, edge_src=graph.edge_src.int(), edge_dst=graph.edge_dst.int()
    )
    a, b = predict(model, graph), predict(model, narrow)
    torch.testing.assert_close(b.energy, a.energy, rtol=0, atol=1e-12)
    torch.testing.assert_close(b.forces, a.forces, rtol=0, atol=1e-12)
    t = predict(model, narrow, training=True)  # and through autograd (double backward)
    torch.testing.assert_close(t.forces, a.forces, rtol=0, atol=1e-12)


@pytest.mark.parametrize("make", [_schnet, _nequip], ids=["schnet", "nequip"])
def test_predict_leaves_the_model_untouched(make):
    """Nothing is switched on the model during the call: a training thread sharing it sees
    its parameters as they are (checked from inside the call by a hook on a layer)."""
    model = make()
    seen = []
    layer = model.interactions[0] if isinstance(model, SchNet) else model.layers[0]
    layer.register_forward_pre_hook(
        lambda module, args: seen.append(all(p.requires_grad for p in model.parameters()))
    )
    graph = Graph.from_ase(molecule("CH3CH2OH"), 5.0, torch.float64)
    p = predict(model, graph)
    assert seen == [True]
    assert not p.energy.requires_grad and not p.forces.requires_grad


def test_schnet_kernel_forces_only_where_exact():
    """A subclass that adds a term to forward, or a hook, gets the forces of what it computes."""

    class Confined(SchNet):  # E + Σ_i |r_i|² / 2: forces −r_i more
        def forward(self, graph):
            extra = 0.5 * graph.positions.pow(2).sum(-1)
            per_graph = torch.zeros(graph.num_graphs, dtype=extra.dtype)
            return super().forward(graph) + per_graph.index_add(0, graph.batch, extra)

    plain = _schnet()
    confined = Confined(plain.config).double()
    confined.load_state_dict(plain.state_dict())
    graph = Graph.from_ase(molecule("CH3CH2OH"), 5.0, torch.float64)
    assert plain.kernel_is_exact() and not confined.kernel_is_exact()
    want = predict(plain, graph).forces - graph.positions
    torch.testing.assert_close(predict(confined, graph).forces, want, rtol=0, atol=1e-10)
    handle = plain.readout2.register_forward_hook(lambda module, args, out: 2 * out)
    assert not plain.kernel_is_exact()
    torch.testing.assert_close(
        predict(plain, graph).forces, predict(plain, graph, training=True).forces.detach()
    )
    handle.remove()
    assert plain.kernel_is_exact()


@pytest.mark.parametrize("make", [_schnet, _nequip], ids=["schnet", "nequip"])
def test_a_graph_of_another_dtype_runs_in_the_model_dtype(make):
    model = make().float()
    graph = Graph.from_ase(molecule("CH3CH2OH"), 5.0, torch.float32)
    wide = graph.to(torch.float64)
    a, b = predict(model, graph), predict(model, wide)
    assert b.energy.dtype == b.forces.dtype == torch.float32
    assert torch.equal(a.energy, b.energy) and torch.equal(a.forces, b.forces)
