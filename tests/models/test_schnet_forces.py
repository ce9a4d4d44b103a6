"""SchNet.energy_and_forces (hand-written derivatives, used by predict for inference) against autograd."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk, molecule

import euclidnn.models.schnet
import euclidnn.nn.conv
from euclidnn.data import Graph
from euclidnn.models import SchNet, SchNetConfig, _schnet_native, predict

needs_fused = pytest.mark.skipif(
    _schnet_native.library() is None or not _schnet_native._GEMM,
    reason="no C compiler or no BLAS symbols in PyTorch: the fused SchNet kernel is not built",
)


def fused_calls(monkeypatch) -> list:
    """Record each run of the fused kernel (so a test can check that it ran)."""
    calls, run = [], _schnet_native.energy_and_forces

    def recording(*args, **kwargs):
        out = run(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(_schnet_native, "energy_and_forces", recording)
    return calls


@pytest.mark.parametrize(
    "pair_min,native_min,fused",
    [
        (10**9, 10**9, False),
        (0, 10**9, False),
        (0, 0, False),
        pytest.param(0, 0, True, marks=needs_fused),
    ],
    ids=["per-edge", "pairs", "pairs+kernel", "fused"],
)
@pytest.mark.parametrize("periodic", [False, True])
def test_matches_autograd(pair_min, native_min, fused, periodic, monkeypatch):
    monkeypatch.setattr(euclidnn.models.schnet, "PAIR_MIN_EDGES", pair_min)
    monkeypatch.setattr(euclidnn.nn.conv, "NATIVE_MIN_EDGES", native_min)
    monkeypatch.setattr(euclidnn.models.schnet, "FUSED", fused)
    calls = fused_calls(monkeypatch)
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
    assert calls == ([True, True] if fused else [])


def schnet(seed=0, **config) -> SchNet:
    torch.manual_seed(seed)
    config = dict(species=(1, 6, 8), num_features=24, num_basis=10) | config
    model = SchNet(SchNetConfig(**config))
    for p in model.parameters():  # away from the zero biases of a fresh model
        p.data.add_(0.1 * torch.randn_like(p))
    return model


def both_paths(model, graph, monkeypatch):
    """(energy, forces) from the fused kernel and from the PyTorch code."""
    monkeypatch.setattr(euclidnn.models.schnet, "FUSED", True)
    calls = fused_calls(monkeypatch)
    fused = model.energy_and_forces(graph)
    assert calls == [True]
    monkeypatch.setattr(euclidnn.models.schnet, "FUSED", False)
    return fused, model.energy_and_forces(graph)


@needs_fused
@pytest.mark.parametrize(
    "config",
    [{}, {"num_filters": 8, "num_interactions": 1}, {"num_features": 5, "num_interactions": 4}],
    ids=["default", "narrow-filters", "odd-width"],
)
def test_fused_kernel_equals_the_pytorch_code(config, monkeypatch):
    """Shapes where filters ≠ features, one or four interactions, a readout of width 2; float64."""
    model = schnet(**config).double()
    graph = Graph.from_ase([molecule("CH3CH2OH"), molecule("H2O")], 4.0, torch.float64)
    (e, f), (e_ref, f_ref) = both_paths(model, graph, monkeypatch)
    torch.testing.assert_close(e, e_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(f, f_ref, rtol=0, atol=1e-12)
    assert f.abs().max() > 1e-2


@needs_fused
def test_fused_kernel_float32_reuses_its_workspace(monkeypatch):
    """float32 against a float64 reference, alternating a large periodic system (the kernel's
    per-thread workspace grows, then shrinks) with a small molecule, on 1 and 2 threads."""
    model = schnet()
    crystal = bulk("C", "diamond", a=3.57, cubic=True) * (2, 2, 2)
    crystal.rattle(0.1, seed=1)  # forces away from zero
    systems = [crystal, molecule("CH3CH2OH")] * 2
    threads = torch.get_num_threads()
    try:
        for i, atoms in enumerate(systems):
            torch.set_num_threads(1 + i % 2)
            reference = model.double().energy_and_forces(Graph.from_ase(atoms, 5.0, torch.float64))
            (e, f), _ = both_paths(model.float(), Graph.from_ase(atoms, 5.0), monkeypatch)
            scale = reference[1].abs().max().item()
            assert scale > 1e-2
            torch.testing.assert_close(e.double(), reference[0], rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(f.double(), reference[1], rtol=0, atol=1e-4 * scale)
    finally:
        torch.set_num_threads(threads)


@needs_fused
def test_fused_kernel_edge_cases(monkeypatch):
    """Atoms beyond the cutoff (no edges at all) and an activation far outside the clamp of the
    kernel's exp (±80): both paths agree."""
    from euclidnn.data import Structure

    model = schnet().double()
    apart = Structure([1, 8], [[0.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
    graph = Graph.from_structure(apart, r_max=5.0, dtype=torch.float64)
    assert graph.edge_src.numel() == 0
    (e, f), (e_ref, f_ref) = both_paths(model, graph, monkeypatch)
    torch.testing.assert_close(e, e_ref, rtol=0, atol=1e-12)
    assert torch.equal(f, torch.zeros_like(f))
    with torch.no_grad():
        model.interactions[0].filter1.bias[:3] = torch.tensor([150.0, -150.0, 25.0])
    graph = Graph.from_ase(molecule("CH3CH2OH"), 5.0, torch.float64)
    (e, f), (e_ref, f_ref) = both_paths(model, graph, monkeypatch)
    torch.testing.assert_close(e, e_ref, rtol=1e-13, atol=0)  # E ~ 300 eV, F ~ 300 eV/Å here
    torch.testing.assert_close(f, f_ref, rtol=1e-13, atol=1e-12)


def test_without_the_kernel_the_pytorch_code_runs(monkeypatch):
    """No BLAS symbols found (another platform): energy_and_forces still equals autograd."""
    monkeypatch.setattr(_schnet_native, "_GEMM", {})
    calls = fused_calls(monkeypatch)
    model = schnet().double()
    graph = Graph.from_ase(molecule("CH3CH2OH"), 5.0, torch.float64)
    energy, forces = model.energy_and_forces(graph)
    reference = predict(model, graph, training=True)
    torch.testing.assert_close(forces, reference.forces, rtol=0, atol=1e-12)
    assert calls == [False]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-14), (torch.float32, 1e-6)])
def test_radial_kernel_matches_the_pytorch_bases(dtype, tol):
    from euclidnn.nn import cosine_cutoff, gaussian_basis

    if _schnet_native.library() is None:
        pytest.skip("no C compiler: the PyTorch formulas run instead")
    r = torch.linspace(0.05, 6.0, 200, dtype=dtype).requires_grad_()  # past r_max = 5
    mu = torch.linspace(0.0, 5.0, 25, dtype=dtype)
    e, de, fc, dfc = _schnet_native.radial(r.detach(), mu, 11.52, 5.0)
    e_ref = gaussian_basis(r, 5.0, 25, gamma=11.52)
    fc_ref = cosine_cutoff(r, 5.0)
    torch.testing.assert_close(e, e_ref.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(fc, fc_ref.detach(), rtol=tol, atol=tol)
    de_ref = torch.stack(
        [torch.autograd.grad(e_ref[:, k].sum(), r, retain_graph=True)[0] for k in range(25)], 1
    )
    (dfc_ref,) = torch.autograd.grad(fc_ref.sum(), r)
    torch.testing.assert_close(de, de_ref, rtol=tol, atol=10 * tol)
    torch.testing.assert_close(dfc, dfc_ref, rtol=tol, atol=tol)
    assert (e[e != 0].abs() >= torch.finfo(dtype).tiny).all()  # no subnormals


def test_concurrent_calls_from_threads_agree_with_serial_ones():
    """Two Python threads alternate different molecules (the per-graph caches are process-wide,
    the C kernel's workspace is per thread): every result equals the serial one."""
    from concurrent.futures import ThreadPoolExecutor

    model = schnet().double()
    graphs = [
        Graph.from_ase(molecule(name), 5.0, torch.float64)
        for name in ("CH3CH2OH", "C6H6", "H2O", "CH3COOH")
    ]
    serial = [model.energy_and_forces(g) for g in graphs]

    def work(offset: int) -> bool:
        for k in range(40):
            i = (k + offset) % len(graphs)
            e, f = model.energy_and_forces(graphs[i])
            # (not bitwise: BLAS may split a product differently under contention)
            if not torch.allclose(e, serial[i][0], rtol=0, atol=1e-12):
                return False
            if not torch.allclose(f, serial[i][1], rtol=0, atol=1e-12):
                return False
        return True

    with ThreadPoolExecutor(2) as pool:
        assert all(pool.map(work, [0, 1]))
