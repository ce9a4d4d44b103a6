"""SchNet.energy_and_forces (the C kernel, used by predict for inference) against autograd, its reference."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from ase.build import bulk, molecule

from euclidnn import kernels
from euclidnn.data import Graph
from euclidnn.kernels import Library
from euclidnn.models import SchNet, SchNetConfig, predict

KERNELS_OFF = os.environ.get("EUCLIDNN_NATIVE", "1") == "0"
needs_fused = pytest.mark.skipif(
    KERNELS_OFF or kernels.schnet.LIBRARY.get() is None,
    reason="EUCLIDNN_NATIVE=0, no C compiler or no BLAS symbols in PyTorch: no SchNet kernel",
)


def paths_taken(monkeypatch) -> list:
    """Record, for each call of the SchNet kernel's entry point, which path ran."""
    calls, run = [], kernels.schnet_energy_and_forces

    def recording(*args, reference, **kwargs):
        ran = []
        out = run(*args, reference=lambda: ran.append(1) or reference(), **kwargs)
        calls.append("autograd" if ran else "kernel")
        return out

    monkeypatch.setattr(kernels, "schnet_energy_and_forces", recording)
    return calls


def without_blas(monkeypatch) -> None:
    """The SchNet library as on a PyTorch build whose library has no BLAS symbols."""

    def no_blas(handle):
        raise OSError("PyTorch's library exports no BLAS sgemm_/dgemm_")

    old = kernels.schnet.LIBRARY
    library = Library(old.source, old.what, old.functions, old.extra_flags, old.libs, no_blas)
    monkeypatch.setattr(kernels.schnet, "LIBRARY", library)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("kernel", marks=needs_fused),
        "autograd",  # EUCLIDNN_NATIVE=0: no kernel at all
        "no-blas",  # a PyTorch without BLAS symbols: autograd, said once
    ],
)
@pytest.mark.parametrize("periodic", [False, True])
def test_matches_autograd(path, periodic, monkeypatch):
    if path == "autograd":
        monkeypatch.setenv("EUCLIDNN_NATIVE", "0")
    elif path == "no-blas":
        without_blas(monkeypatch)
    calls = paths_taken(monkeypatch)
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        energy, forces = model.energy_and_forces(graph)
    torch.testing.assert_close(energy, reference.energy, rtol=0, atol=1e-12)
    torch.testing.assert_close(forces, reference.forces, rtol=0, atol=1e-12)
    assert forces.abs().max() > 1e-2  # not vacuous
    fast = predict(model, graph)  # inference goes through energy_and_forces
    assert torch.equal(fast.forces, forces)
    ran = "kernel" if path == "kernel" else "autograd"
    assert calls == [ran, ran]
    if path == "no-blas" and not KERNELS_OFF:  # said once, at the first call
        assert [str(w.message) for w in caught if "BLAS" in str(w.message)] != []
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.energy_and_forces(graph)


def schnet(seed=0, **config) -> SchNet:
    torch.manual_seed(seed)
    config = dict(species=(1, 6, 8), num_features=24, num_basis=10) | config
    model = SchNet(SchNetConfig(**config))
    for p in model.parameters():  # away from the zero biases of a fresh model
        p.data.add_(0.1 * torch.randn_like(p))
    return model


def both_paths(model, graph, monkeypatch):
    """(energy, forces) from the fused kernel and from autograd."""
    calls = paths_taken(monkeypatch)
    fused = model.energy_and_forces(graph)
    with monkeypatch.context() as m:
        m.setenv("EUCLIDNN_NATIVE", "0")
        reference = model.energy_and_forces(graph)
    assert calls == ["kernel", "autograd"]
    return fused, reference


@needs_fused
@pytest.mark.parametrize(
    "config",
    [{}, {"num_filters": 8, "num_interactions": 1}, {"num_features": 5, "num_interactions": 4}],
    ids=["default", "narrow-filters", "odd-width"],
)
def test_fused_kernel_equals_autograd(config, monkeypatch):
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
    # (autograd differentiates softplus with its threshold, the kernel uses sigmoid: 1e-10)
    torch.testing.assert_close(f, f_ref, rtol=1e-10, atol=1e-12)


@needs_fused
def test_fused_kernel_coincident_atoms(monkeypatch):
    """Two atoms moved onto each other after the graph was built (an MD step gone wrong; a
    Structure refuses them): the pair's force term is 0 in both paths, as autograd's norm at 0,
    not NaN."""
    from euclidnn.data import Structure

    model = schnet().double()
    s = Structure([1, 8, 1], [[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.9, 0.7, 0.1]])
    graph = Graph.from_structure(s, r_max=5.0, dtype=torch.float64)
    positions = graph.positions.clone()
    positions[1] = positions[0]
    (e, f), (e_ref, f_ref) = both_paths(model, graph.with_positions(positions), monkeypatch)
    assert torch.isfinite(f_ref).all() and f_ref.abs().max() > 1e-3
    torch.testing.assert_close(e, e_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(f, f_ref, rtol=0, atol=1e-12)


def test_concurrent_calls_from_threads_agree_with_serial_ones():
    """Two Python threads alternate different molecules (index structures are kept with each
    graph, the C kernel's workspace is per thread): every result equals the serial one."""
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
