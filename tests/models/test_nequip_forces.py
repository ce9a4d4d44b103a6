"""NequIP.energy_and_forces (the hand-written inference derivative, used by predict for
inference) against autograd through NequIP.forward, its reference."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from ase import Atoms
from ase.build import molecule

from euclidnn import kernels
from euclidnn.data import Graph, Structure
from euclidnn.models import NequIP, NequIPConfig, nequip_forces, predict
from euclidnn.models.interface import Potential

KERNELS_OFF = os.environ.get("EUCLIDNN_NATIVE", "1") == "0"
needs_fused = pytest.mark.skipif(
    KERNELS_OFF or kernels.conv.LIBRARY.get() is None,
    reason="EUCLIDNN_NATIVE=0 or no C compiler: no convolution kernel, autograd only",
)


def nequip(species=(1, 6, 8), dtype=torch.float64, **config) -> NequIP:
    """A small NequIP with random (not initial) scales and shifts."""
    torch.manual_seed(0)
    config = {"num_features": 4, "num_layers": 3, "avg_num_neighbors": 6.0, **config}
    n = len(species)
    model = NequIP(
        NequIPConfig(
            species=species,
            energy_scales=tuple(0.5 + 0.3 * k for k in range(n)),
            energy_shifts=tuple(-1.0 - k for k in range(n)),
            **config,
        )
    )
    return model.to(dtype)


def paths_taken(monkeypatch) -> list:
    """Record, for each energy_and_forces call, whether the hand-written path ran."""
    calls, run = [], nequip_forces.energy_and_forces

    def recording(*args, **kwargs):
        calls.append("fast")
        return run(*args, **kwargs)

    monkeypatch.setattr(nequip_forces, "energy_and_forces", recording)
    return calls


def assert_matches_reference(model, graph, monkeypatch, *, rtol=1e-12, expect="fast"):
    calls = paths_taken(monkeypatch)
    energy, forces = model.energy_and_forces(graph)
    assert calls == ([expect] if expect == "fast" else [])
    assert not energy.requires_grad and not forces.requires_grad
    e_ref, f_ref = Potential.energy_and_forces(model, graph)  # autograd through forward()
    scale = max(float(f_ref.abs().max()), 1e-3)
    torch.testing.assert_close(energy, e_ref, rtol=rtol, atol=rtol * float(e_ref.abs().max()))
    torch.testing.assert_close(forces, f_ref, rtol=0, atol=rtol * scale)
    return energy, forces


def molecules() -> Graph:
    return Graph.from_ase([molecule("CH3CH2OH"), molecule("H2O")], 4.0, torch.float64)


@needs_fused
@pytest.mark.parametrize("parity", [True, False])
@pytest.mark.parametrize("lmax", [0, 1, 2, 3])
def test_matches_autograd(lmax, parity, monkeypatch):
    model = nequip(lmax=lmax, parity=parity)
    _, forces = assert_matches_reference(model, molecules(), monkeypatch)
    assert forces.abs().max() > 1e-3  # not vacuous


@needs_fused
def test_matches_autograd_periodic_with_self_images(monkeypatch):
    """A small cell: atoms see their own periodic images (edges i → i with a shift)."""
    atoms = Atoms("OH2", [[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    atoms.set_cell([2.7, 3.1, 2.9])
    atoms.pbc = True
    graph = Graph.from_ase([atoms, molecule("CH4")], 3.5, torch.float64)
    assert bool((graph.edge_src == graph.edge_dst).any())
    assert_matches_reference(nequip(lmax=2), graph, monkeypatch)


@needs_fused
def test_one_species_one_layer_and_no_radial_hidden_layer(monkeypatch):
    graph = Graph.from_ase(molecule("O3"), 4.0, torch.float64)
    assert_matches_reference(nequip(species=(8,), num_layers=1), graph, monkeypatch)
    model = nequip(num_layers=2, radial_mlp_depth=0)
    assert_matches_reference(model, molecules(), monkeypatch)


@needs_fused
def test_no_edges_and_a_single_atom(monkeypatch):
    model = nequip()
    apart = Structure([1, 8], [[0.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
    for structure in (apart, Structure([6], [[0.0, 0.0, 0.0]])):
        graph = Graph.from_structure(structure, r_max=4.0, dtype=torch.float64)
        assert graph.edge_src.numel() == 0
        energy, forces = assert_matches_reference(model, graph, monkeypatch)
        assert torch.equal(forces, torch.zeros_like(forces))
        monkeypatch.undo()


@needs_fused
def test_coincident_atoms_give_nan_forces_as_the_reference(monkeypatch):
    """A pair at distance 0 has no direction: the two atoms' forces are NaN on both paths (the
    fast path gave 1e16), the others finite and equal, the energy equal."""
    graph = Graph.from_ase(molecule("CH3CH2OH"), 4.0, torch.float64)
    positions = graph.positions.clone()
    positions[1] = positions[0]  # an MD step gone wrong; a Structure refuses such atoms
    graph = graph.with_positions(positions)
    calls = paths_taken(monkeypatch)
    energy, forces = nequip().energy_and_forces(graph)
    assert calls == ["fast"]
    e_ref, f_ref = Potential.energy_and_forces(nequip(), graph)
    torch.testing.assert_close(energy, e_ref, rtol=1e-12, atol=0)
    assert torch.equal(forces.isnan(), f_ref.isnan()) and forces[:2].isnan().all()
    torch.testing.assert_close(forces[2:], f_ref[2:], rtol=1e-12, atol=1e-12)


@needs_fused
def test_strided_and_int32_inputs(monkeypatch):
    graph = molecules()
    wide = torch.zeros(graph.positions.shape[0], 6, dtype=torch.float64)
    wide[:, ::2] = graph.positions
    pairs = torch.stack([graph.edge_src, graph.edge_dst], dim=1)  # columns are strided
    strided = dataclasses.replace(
        graph, positions=wide[:, ::2], edge_src=pairs[:, 0], edge_dst=pairs[:, 1]
    )
    narrow = dataclasses.replace(
        graph, edge_src=graph.edge_src.int(), edge_dst=graph.edge_dst.int()
    )
    model = nequip()
    want = model.energy_and_forces(graph)
    for other in (strided, narrow):
        got = assert_matches_reference(model, other, monkeypatch)
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
        monkeypatch.undo()


@needs_fused
def test_float32_matches_float64(monkeypatch):
    graph = molecules()
    model = nequip(lmax=2, dtype=torch.float32)
    energy, forces = assert_matches_reference(
        model, graph.to(torch.float32), monkeypatch, rtol=2e-5
    )
    wide = model.to(torch.float64)
    e64, f64 = Potential.energy_and_forces(wide, graph)
    torch.testing.assert_close(energy.double(), e64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(forces.double(), f64, rtol=0, atol=1e-4 * float(f64.abs().max()))


@needs_fused
def test_predict_runs_it_and_training_keeps_autograd(monkeypatch):
    """predict(training=False) takes the hand-written path; training=True runs autograd with
    a graph for the force loss (double backward), and the two agree."""
    model, graph = nequip(), molecules()
    calls = paths_taken(monkeypatch)
    fast = predict(model, graph)
    assert calls == ["fast"]
    trained = predict(model, graph, training=True)
    assert calls == ["fast"] and trained.forces.requires_grad
    torch.testing.assert_close(fast.forces, trained.forces.detach(), rtol=0, atol=1e-12)
    loss = trained.forces.pow(2).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.layers[-1].conv.radial.parameters())


@needs_fused
def test_inference_mode_leaves_nothing_behind(monkeypatch):
    """The path runs in inference mode: its results, and what it kept with the graph (species
    rows, edge orders, one-hot), must still serve autograd and in-place updates afterwards."""
    model = nequip()
    graph = Graph.from_ase(molecule("CH3CH2OH"), 4.0, torch.float64)  # nothing kept yet
    calls = paths_taken(monkeypatch)
    energy, forces = model.energy_and_forces(graph)
    assert calls == ["fast"] and not energy.is_inference() and not forces.is_inference()
    forces.mul_(2.0)  # an inference tensor would refuse this
    trained = predict(model, graph, training=True)  # saves the kept index tensors for backward
    trained.forces.pow(2).sum().backward()
    torch.testing.assert_close(forces / 2, trained.forces.detach(), rtol=0, atol=1e-12)
    fresh = Graph.from_ase(molecule("CH3CH2OH"), 4.0, torch.float64)
    with torch.inference_mode():  # a caller's inference mode: the graph's topology is kept
        energy_im, _ = model.energy_and_forces(fresh)  # outside it all the same
    torch.testing.assert_close(energy_im, energy)
    predict(model, fresh, training=True).forces.pow(2).sum().backward()


def test_reference_where_the_fast_path_does_not_apply(monkeypatch):
    """EUCLIDNN_NATIVE=0, a hook, a subclass that changes the energy or a replaced layer: the
    forces are those of what the model computes, by autograd."""
    model, graph = nequip(), molecules()
    monkeypatch.setenv("EUCLIDNN_NATIVE", "0")
    assert_matches_reference(model, graph, monkeypatch, expect="reference")
    monkeypatch.undo()
    if KERNELS_OFF or kernels.conv.LIBRARY.get() is None:
        return
    handle = model.layers[1].gate.register_forward_hook(lambda module, args, out: 2 * out)
    assert_matches_reference(model, graph, monkeypatch, expect="reference")
    handle.remove()
    monkeypatch.undo()

    class Confined(NequIP):  # E + Σ_i |r_i|² / 2: forces −r_i more
        def atomic_energies(self, graph):
            return super().atomic_energies(graph) + 0.5 * graph.positions.pow(2).sum(-1)

    confined = Confined(model.config).double()
    confined.load_state_dict(model.state_dict())
    assert not confined.fast_path_applies()
    want = predict(model, graph).forces - graph.positions
    torch.testing.assert_close(predict(confined, graph).forces, want, rtol=0, atol=1e-10)
    model.layers[0] = nequip(num_layers=3).layers[0].double()
    assert not model.fast_path_applies()
    assert_matches_reference(model, graph, monkeypatch, expect="reference")
