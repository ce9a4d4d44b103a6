"""Property test of the PyTorch ↔ C boundary: every kernel entry point, on random inputs of
every layout the boundary must accept, equals its PyTorch reference in value, gradient and
second derivative; inputs it must refuse raise (checked in a subprocess, so that a crash fails
the test instead of killing the suite).

`make test` runs a short sample of cases; `make test-slow` many more.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from euclidnn import kernels
from euclidnn.o3 import Irreps, TensorProduct, uvu_paths

pytestmark = pytest.mark.skipif(
    kernels.conv.LIBRARY.get() is None, reason="no C compiler: the kernels are not built"
)

LAYOUTS = ("contiguous", "transposed", "strided", "expanded")


@pytest.fixture(autouse=True)
def _native_path(monkeypatch):
    """These tests are about the fused path: they ask for it also where the suite runs with
    ``EUCLIDNN_NATIVE=0`` (their subprocesses inherit the setting); the reference side of each
    comparison turns it off itself."""
    monkeypatch.setenv("EUCLIDNN_NATIVE", "1")


def tensor(rng, rows, cols, dtype, layout, requires_grad=True):
    """A [rows, cols] tensor in the given memory layout, and the leaf its gradient reaches."""
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    if layout == "expanded":
        leaf = torch.randn(1, cols, dtype=dtype, generator=g)
    elif layout == "transposed":
        leaf = torch.randn(cols, rows, dtype=dtype, generator=g)
    elif layout == "strided":
        leaf = torch.randn(rows, 2 * cols, dtype=dtype, generator=g)
    else:
        leaf = torch.randn(rows, cols, dtype=dtype, generator=g)
    leaf.requires_grad_(requires_grad)
    view = {
        "expanded": lambda t: t.expand(rows, cols),
        "transposed": lambda t: t.t(),
        "strided": lambda t: t[:, ::2],
        "contiguous": lambda t: t,
    }[layout](leaf)
    return view, leaf


def indices(rng, n, size, dtype):
    return (
        torch.from_numpy(rng.integers(0, size, n)).to(dtype)
        if size
        else torch.zeros(0, dtype=dtype)
    )


def tolerance(dtype):
    return dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-4)


def assert_same(a, b, dtype):
    torch.testing.assert_close(a, b, **tolerance(dtype))


def with_threads(threads, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def value_and_derivatives(fn, leaves, seed):
    """fn(), ∂(Σ out · c)/∂leaves with an expanded (stride-0) upstream gradient, and the second
    derivative ∂(Σ sin(first derivative))/∂leaves."""
    out = fn()
    upstream = torch.full((1, out.shape[-1]), 0.7, dtype=out.dtype).expand_as(out)
    firsts = torch.autograd.grad(out, leaves, upstream, create_graph=True, allow_unused=True)
    firsts = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, firsts)]
    g = torch.Generator().manual_seed(seed)  # (randn_like would follow each gradient's strides)
    total = sum((d * torch.randn(d.shape, dtype=d.dtype, generator=g)).sum() for d in firsts)
    seconds = torch.autograd.grad(total, leaves, allow_unused=True) if total.requires_grad else []
    seconds = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, seconds)]
    return [out.detach(), *[g.detach() for g in firsts], *seconds]


def filter_case(seed, big=False):
    """continuous_filter_conv and its derivatives on one random case (``big``: enough edges
    that the kernel runs on 2 threads, above its minimum work per thread)."""
    from euclidnn.nn import continuous_filter_conv

    rng = np.random.default_rng(seed)
    dtype = (torch.float32, torch.float64)[seed % 2]
    index_dtype = (torch.int32, torch.int64)[rng.integers(2)]
    n_src, num_nodes = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    n_edges = 6000 if big else int(rng.choice([0, 1, 7, 60]))
    width = 16 if big else int(rng.choice([0, 1, 3, 16]))
    shared = bool(rng.integers(2))
    n_rows = int(rng.integers(1, 12)) if shared else n_edges
    x, x_leaf = tensor(rng, n_src, width, dtype, rng.choice(LAYOUTS))
    w, w_leaf = tensor(rng, n_rows, width, dtype, rng.choice(LAYOUTS))
    src, dst = (
        indices(rng, n_edges, n_src, index_dtype),
        indices(rng, n_edges, num_nodes, index_dtype),
    )
    row = indices(rng, n_edges, n_rows, index_dtype) if shared else None
    threads = 2 if big else int(rng.integers(1, 3))

    def fused():
        return continuous_filter_conv(x, w, src, dst, num_nodes, row)

    def reference():  # written here, independently of the package
        w_e = w if row is None else w[row.long()]
        return torch.zeros(num_nodes, width, dtype=dtype).index_add(
            0, dst.long(), x[src.long()] * w_e
        )

    got = with_threads(threads, lambda: value_and_derivatives(fused, [x_leaf, w_leaf], seed))
    want = value_and_derivatives(reference, [x_leaf, w_leaf], seed)
    for a, b in zip(got, want):
        assert_same(a, b, dtype)


IRREPS = [("2x0e+0x1o+3x1o", 1), ("3x0e+2x1o+1x2e", 2), ("1x0e", 0), ("0x0e+2x1e", 1)]


def tensor_product_case(seed, big=False):
    """TensorProduct.convolve (the equivariant convolution kernel) on one random case
    (``big``: as :func:`filter_case`)."""
    rng = np.random.default_rng(seed)
    dtype = (torch.float32, torch.float64)[seed % 2]
    index_dtype = (torch.int32, torch.int64)[rng.integers(2)]
    irreps, lmax = IRREPS[1 if big else rng.integers(len(IRREPS))]
    sh = Irreps.spherical_harmonics(lmax)
    tp = TensorProduct(irreps, sh, uvu_paths(irreps, sh, irreps))
    assert tp.conv_spec is not None
    n, num_nodes = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    n_edges = 3000 if big else int(rng.choice([0, 1, 9, 50]))
    x, x_leaf = tensor(rng, n, tp.irreps_in1.dim, dtype, rng.choice(LAYOUTS))
    y, y_leaf = tensor(rng, n_edges, sh.dim, dtype, rng.choice(LAYOUTS))
    w, w_leaf = tensor(rng, n_edges, tp.weight_numel, dtype, rng.choice(LAYOUTS))
    src, dst = indices(rng, n_edges, n, index_dtype), indices(rng, n_edges, num_nodes, index_dtype)
    threads = 2 if big else int(rng.integers(1, 3))

    def fused():
        return tp.convolve(x, y, w, src, dst, num_nodes)

    def reference():
        messages = tp.contraction(x[src.long()], y, w)  # the plain PyTorch maths
        return messages.new_zeros(num_nodes, messages.shape[-1]).index_add(0, dst.long(), messages)

    leaves = [x_leaf, y_leaf, w_leaf]
    got = with_threads(threads, lambda: value_and_derivatives(fused, leaves, seed))
    want = value_and_derivatives(reference, leaves, seed)
    for a, b in zip(got, want):
        assert_same(a, b, dtype)


def schnet_case(seed):
    """SchNet.energy_and_forces (one C call) against its PyTorch code, sizes alternating so the
    kernel's per-thread workspace grows and shrinks."""
    import dataclasses

    from ase.build import bulk, molecule

    from euclidnn.data import Graph
    from euclidnn.models import SchNet, SchNetConfig

    rng = np.random.default_rng(seed)
    dtype = (torch.float32, torch.float64)[seed % 2]
    torch.manual_seed(seed)
    model = SchNet(
        SchNetConfig(species=(1, 6, 8, 14), num_features=int(rng.choice([3, 16])),
                     num_filters=int(rng.choice([5, 16])), num_interactions=int(rng.integers(1, 4)),
                     num_basis=int(rng.choice([2, 12])), r_max=float(rng.choice([2.5, 4.0])))
    ).to(dtype)  # fmt: skip
    for p in model.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    systems = [molecule("CH3CH2OH"), bulk("Si", cubic=True) * (2, 1, 1), molecule("H2O")]
    for k in rng.permutation(len(systems)):
        atoms = systems[k].copy()
        atoms.rattle(0.05, seed=seed)
        graph = Graph.from_ase(atoms, model.config.r_max, dtype)
        if rng.integers(2):
            graph = dataclasses.replace(
                graph, edge_src=graph.edge_src.int(), edge_dst=graph.edge_dst.int()
            )
        threads = int(rng.integers(1, 3))
        got = with_threads(threads, lambda graph=graph: model.energy_and_forces(graph))
        with pytest.MonkeyPatch.context() as m:
            m.setenv("EUCLIDNN_NATIVE", "0")
            want = model.energy_and_forces(graph)
        for a, b in zip(got, want):
            assert_same(a, b, dtype)


CASES = {"filter": filter_case, "tensor_product": tensor_product_case, "schnet": schnet_case}


@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize("seed", range(12))
def test_random_inputs_match_the_reference(kind, seed):
    CASES[kind](seed)


@pytest.mark.parametrize("kind", ["filter", "tensor_product"])
@pytest.mark.parametrize("seed", range(2))
def test_work_for_several_threads_matches_the_reference(kind, seed):
    CASES[kind](seed, big=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize("seed", range(12, 212))
def test_many_random_inputs_match_the_reference(kind, seed):
    CASES[kind](seed)


# ---- inputs that must raise, never crash ---------------------------------------------------

BAD_INPUTS = textwrap.dedent(
    """
    import torch
    from euclidnn import kernels
    from euclidnn.nn import continuous_filter_conv
    from euclidnn.o3 import Irreps, TensorProduct, uvu_paths

    x, w = torch.randn(4, 3), torch.randn(5, 3)
    src, dst = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([1, 2, 3, 0, 0])
    sh = Irreps.spherical_harmonics(1)
    tp = TensorProduct("2x0e+2x1o", sh, uvu_paths("2x0e+2x1o", sh, "2x0e+2x1o"))
    xt, yt, wt = torch.randn(4, 8), torch.randn(5, 4), torch.randn(5, tp.weight_numel)
    big = torch.tensor([0, 1, 2, 3, 10**9])
    cases = {
        "src out of range": lambda: continuous_filter_conv(x, w, big, dst, 4),
        "negative src": lambda: continuous_filter_conv(x, w, -src - 1, dst, 4),
        "dst out of range": lambda: continuous_filter_conv(x, w, src, big, 4),
        "dst beyond num_nodes": lambda: continuous_filter_conv(x, w, src, dst, 2),
        "int32 out of range": lambda: continuous_filter_conv(x, w, big.int(), dst.int(), 4),
        "row out of range": lambda: continuous_filter_conv(x, w[:2], src, dst, 4, src),
        "float indices": lambda: continuous_filter_conv(x, w, src.double(), dst, 4),
        "2-d indices": lambda: continuous_filter_conv(x, w, src[None], dst[None], 4),
        "lengths differ": lambda: continuous_filter_conv(x, w, src, dst[:3], 4),
        "filter rows differ": lambda: continuous_filter_conv(x, w[:3], src, dst, 4),
        "widths differ": lambda: continuous_filter_conv(x, w[:, :2], src, dst, 4),
        "edges of other tensors": lambda: continuous_filter_conv(
            x, w, src, dst, 4, edges=kernels.Edges(src.clone(), dst, 4)),
        "edges of other sizes": lambda: continuous_filter_conv(
            x, w, src, dst, 4, edges=kernels.Edges(src, dst, 5)),
        "tp src out of range": lambda: tp.convolve(xt, yt, wt, big, dst, 4),
        "tp dst out of range": lambda: tp.convolve(xt, yt, wt, src, big, 4),
        "tp sh rows differ": lambda: tp.convolve(xt, yt[:2], wt, src, dst, 4),
        "tp weight width": lambda: tp.convolve(xt, yt, wt[:, :3], src, dst, 4),
        "tp x width": lambda: tp.convolve(xt[:, :5], yt, wt, src, dst, 4),
        "spec out of widths": lambda: kernels.ConvSpec(
            torch.tensor([[0, 0, 0, 0, 9]]), torch.ones(1), (4, 1, 4, 4)),
        "spec negative offset": lambda: kernels.ConvSpec(
            torch.tensor([[-1, 0, 0, 0, 1]]), torch.ones(1), (4, 1, 4, 4)),
        "row_edge out of range": lambda: kernels.Edges(
            src, dst, 4, row=src, num_rows=4, row_edge=torch.tensor([0, 1, 2, 99])).prepared(),
    }
    """
)

BAD_SCHNET = textwrap.dedent(
    """
    import dataclasses
    from ase.build import molecule
    from euclidnn.data import Graph
    from euclidnn.models import SchNet, SchNetConfig
    from euclidnn.models.schnet import pair_edges
    model = SchNet(SchNetConfig(species=(1, 6, 8), num_features=8, num_basis=4))
    graph = Graph.from_ase(molecule("CH3CH2OH"), 5.0)
    ref = pair_edges(graph)
    weights = kernels.SchNetWeights(
        model.embedding.weight, model.readout1.weight, model.readout1.bias,
        model.readout2.weight, model.readout2.bias, model.scale_shift.scales,
        model.scale_shift.shifts,
        [(i.filter1.weight, i.filter1.bias, i.filter2.weight, i.filter2.bias, i.in2filter.weight,
          i.out1.weight, i.out1.bias, i.out2.weight, i.out2.bias) for i in model.interactions])
    mu = torch.linspace(0, 5, 4)
    n = graph.positions.shape[0]
    species = torch.zeros(n, dtype=torch.int64)

    def run(weights=weights, positions=graph.positions, edges=ref, batch=graph.batch,
            num_graphs=1, species=species, mu=mu):
        return kernels.schnet_energy_and_forces(
            weights, positions, None, edges, batch, num_graphs, species, mu, 1.0, 5.0,
            reference=lambda: (_ for _ in ()).throw(AssertionError("reference ran")))

    bad_w = weights._replace(readout1_w=weights.readout1_w[:, :3])
    cases.update({
        "schnet species out of range": lambda: run(species=species + 7),
        "schnet batch out of range": lambda: run(batch=graph.batch + 3),
        "schnet positions rows": lambda: run(positions=graph.positions[:4]),
        "schnet weight shape": lambda: run(weights=bad_w),
        "schnet mu length": lambda: run(mu=mu[:2]),
        "schnet edges of other sizes": lambda: run(
            edges=kernels.Edges(graph.edge_src, graph.edge_dst, n + 1, row=graph.edge_pairs()[1],
                                num_rows=graph.edge_pairs()[0].shape[0],
                                row_edge=graph.edge_pairs()[0])),
    })
    """
)

RUN = textwrap.dedent(
    """
    silent = [name for name, call in cases.items() if not raises(call)]
    print("SILENT", silent)
    """
)


def test_bad_inputs_raise_and_never_crash():
    script = (
        BAD_INPUTS
        + BAD_SCHNET
        + textwrap.dedent(
            """
            def raises(call):
                try:
                    call()
                except (IndexError, TypeError, ValueError, RuntimeError) as err:
                    print(type(err).__name__, str(err)[:100])
                    return True
                return False
            """
        )
        + RUN
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (
        f"the process died (code {done.returncode}):\n{done.stderr[-3000:]}"
    )
    assert "SILENT []" in done.stdout, done.stdout
