"""The fused C convolution (TensorProduct.convolve) against the plain PyTorch composition."""

from __future__ import annotations

import os

import pytest
import torch

from euclidnn import kernels
from euclidnn.o3 import Irreps, TensorProduct, fully_connected_paths, uvu_paths

needs_kernel = pytest.mark.skipif(
    os.environ.get("EUCLIDNN_NATIVE", "1") == "0" or kernels.conv.LIBRARY.get() is None,
    reason="EUCLIDNN_NATIVE=0 or no C compiler: the fused kernel does not run",
)


def reference(tp: TensorProduct, x, y, w, src, dst, n):
    messages = tp.contraction(x.index_select(0, src), y, w)  # plain PyTorch
    return messages.new_zeros(n, messages.shape[-1]).index_add_(0, dst, messages)


def problem(
    irreps_in: str, lmax: int, target: str, n: int, n_edges: int, dtype=torch.float64, seed: int = 0
):
    g = torch.Generator().manual_seed(seed)
    sh = Irreps.spherical_harmonics(lmax)
    tp = TensorProduct(irreps_in, sh, uvu_paths(irreps_in, sh, target))
    src = torch.randint(0, n, (n_edges,), generator=g)
    dst = torch.randint(0, n, (n_edges,), generator=g)
    x = torch.randn(n, tp.irreps_in1.dim, generator=g, dtype=dtype).requires_grad_()
    y = torch.randn(n_edges, sh.dim, generator=g, dtype=dtype).requires_grad_()
    w = torch.randn(n_edges, tp.weight_numel, generator=g, dtype=dtype).requires_grad_()
    return tp, x, y, w, src, dst


CASES = [
    ("8x0e+8x0o+8x1e+8x1o", 1, "8x0e+8x0o+8x1e+8x1o"),
    ("4x0e+4x1o+4x2e", 2, "4x0e+4x1o+4x2e"),
    ("3x0e+2x1o+5x2e+1x3o", 3, "1x0e+1x1o+1x2e+1x3o+1x0o+1x1e+1x2o+1x3e"),
]


@needs_kernel
@pytest.mark.parametrize("irreps_in,lmax,target", CASES)
def test_equals_composition_and_gradients(irreps_in, lmax, target):
    tp, x, y, w, src, dst = problem(irreps_in, lmax, target, n=6, n_edges=40)
    assert tp.conv_spec is not None
    out = tp.convolve(x, y, w, src, dst, 7)  # node 6 receives nothing
    ref = reference(tp, x, y, w, src, dst, 7)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert out[6].abs().max() == 0
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, y, w), g)
    want = torch.autograd.grad(ref, (x, y, w), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@needs_kernel
def test_second_derivatives_match_composition():
    """Force training differentiates the forces: the kernel's double backward must be exact."""
    tp, x, y, w, src, dst = problem("3x0e+3x1o+3x1e", 1, "3x0e+3x1o+3x1e", n=5, n_edges=20)

    def double(fn):
        out = fn(tp, x, y, w, src, dst, 5)
        (gy,) = torch.autograd.grad(out.pow(2).sum(), y, create_graph=True)
        return torch.autograd.grad(gy.sin().sum(), (x, y, w))

    for a, b in zip(double(lambda *args: args[0].convolve(*args[1:])), double(reference)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


@needs_kernel
@pytest.mark.parametrize("irreps_in,lmax,target", CASES)
def test_per_edge_product_runs_the_kernel(irreps_in, lmax, target, monkeypatch):
    """TensorProduct(x, y, w) with one row of each per edge runs the fused kernel (each row its
    own node): the plain contraction's numbers, first and second derivatives included, for
    strided inputs too."""
    tp, x, y, w, _, _ = problem(irreps_in, lmax, target, n=40, n_edges=40)
    calls, convolve = [], kernels.convolve
    monkeypatch.setattr(kernels, "convolve", lambda *a, **k: calls.append(1) or convolve(*a, **k))

    def double(fn):
        out = fn(x, y, w)
        (gy,) = torch.autograd.grad(out.pow(2).sum(), y, create_graph=True)
        return [out, *torch.autograd.grad(gy.sin().sum(), (x, y, w))]

    for a, b in zip(double(tp), double(tp.contraction)):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)
    assert calls
    strided = torch.cat([x, x], dim=1)[:, ::2]  # every other column: not contiguous
    assert not strided.is_contiguous()
    got, want = tp(strided, y, w), tp.contraction(strided.contiguous(), y, w)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-11)


FULLY_CONNECTED = [
    ("32x0e+32x1o+32x2e", "0e+1o+2e", "32x0e+32x1o+32x2e"),  # the benchmark's product
    ("4x0e+3x1o", "0e+1o", "5x0e+2x1o+2x1e+3x2e+2x0o"),  # 2x0o: a term no path reaches
    ("2x1o+3x0e+1x2e", "1e+0o", "3x1o+2x0e+1x2o"),  # unsorted terms, odd parities
    ("0x0e+2x1o", "0e+1o", "3x0e+0x1o+2x1o"),  # empty terms
    ("0x1o", "1o", "2x0e"),  # nothing in, zeros out
]


@needs_kernel
@pytest.mark.parametrize("irreps_in1,irreps_in2,out", FULLY_CONNECTED)
def test_shared_weights_product_runs_the_kernel(irreps_in1, irreps_in2, out, monkeypatch):
    """A fully connected product with shared weights runs the kernel's Clebsch–Gordan step
    and one matrix product per output term: the plain contraction's numbers, first and second
    derivatives included (weights too), for strided inputs and an empty batch too."""
    g = torch.Generator().manual_seed(1)
    tp = TensorProduct(
        irreps_in1, irreps_in2, fully_connected_paths(irreps_in1, irreps_in2, out),
        internal_weights=True,
    ).double()  # fmt: skip
    assert tp.shared is not None
    x = torch.randn(11, tp.irreps_in1.dim, generator=g, dtype=torch.float64).requires_grad_()
    y = torch.randn(11, tp.irreps_in2.dim, generator=g, dtype=torch.float64).requires_grad_()
    calls, conv_partial = [], kernels.conv_partial
    monkeypatch.setattr(kernels, "conv_partial", lambda *a: calls.append(1) or conv_partial(*a))

    def double(fn):
        out = fn(x, y, tp.weight)
        gx, gy = torch.autograd.grad(out.pow(2).sum(), (x, y), create_graph=True)
        return [out, *torch.autograd.grad(gy.sin().sum() + gx.pow(2).sum(), (x, y, tp.weight))]

    def single(fn):  # a backward that is not differentiated: the fused one
        out = fn(x, y, tp.weight)
        return list(torch.autograd.grad(out, (x, y, tp.weight), out.detach().cos()))

    for a, b in zip(double(tp) + single(tp), double(tp.contraction) + single(tp.contraction)):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)
    assert calls
    (only_x,) = torch.autograd.grad(tp(x, y.detach()).sum(), x)  # some inputs need no gradient
    torch.testing.assert_close(
        only_x, torch.autograd.grad(tp.contraction(x, y, tp.weight).sum(), x)[0], rtol=0, atol=1e-11
    )
    strided = torch.cat([x, x], dim=1)[:, ::2]
    torch.testing.assert_close(
        tp(strided, y), tp.contraction(strided.contiguous(), y, tp.weight), rtol=0, atol=1e-11
    )
    empty = tp(x[:0], y[:0])
    assert empty.shape == (0, tp.irreps_out.dim)


@needs_kernel
def test_shared_weights_gradcheck_float32_and_threads():
    tp = TensorProduct(
        "3x0e+2x1o", "0e+1o", fully_connected_paths("3x0e+2x1o", "0e+1o", "2x0e+3x1o"),
        internal_weights=True,
    ).double()  # fmt: skip
    x = torch.randn(4, tp.irreps_in1.dim, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, tp.irreps_in2.dim, dtype=torch.float64, requires_grad=True)
    w = tp.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(tp, (x, y, w))
    assert torch.autograd.gradgradcheck(tp, (x, y, w))

    big = TensorProduct(*FULLY_CONNECTED[0][:2], fully_connected_paths(*FULLY_CONNECTED[0]),
                        internal_weights=True)  # fmt: skip
    x = big.irreps_in1.randn(3000, -1).requires_grad_()
    y = big.irreps_in2.randn(3000, -1).requires_grad_()
    threads = torch.get_num_threads()
    try:
        results = []
        for t in (1, 2):  # 3000 rows: two chunks, above the kernel's threshold for threads
            torch.set_num_threads(t)
            out = big(x, y)
            results.append([out, *torch.autograd.grad(out, (x, y, big.weight), out.detach())])
    finally:
        torch.set_num_threads(threads)
    x64, y64, w64 = (t.detach().double().requires_grad_() for t in (x, y, big.weight))
    out = big.contraction(x64, y64, w64)
    want = [out, *torch.autograd.grad(out, (x64, y64, w64), out.detach())]
    for got in results:
        assert got[0].dtype == torch.float32
        for a, b in zip(got, want):
            b = b.detach()
            torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-3 * b.abs().max().item())


@needs_kernel
def test_gradcheck_to_second_order():
    tp, x, y, w, src, dst = problem("2x0e+2x1o+2x2e", 2, "2x0e+2x1o+2x2e", n=4, n_edges=9)
    fn = lambda x, y, w: tp.convolve(x, y, w, src, dst, 4)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, y, w))
    assert torch.autograd.gradgradcheck(fn, (x, y, w))


@needs_kernel
def test_float32_and_threads():
    tp, x, y, w, src, dst = problem(
        "16x0e+16x1o+16x2e", 2, "16x0e+16x1o+16x2e", n=50, n_edges=900, dtype=torch.float32
    )
    threads = torch.get_num_threads()
    try:
        results = []
        for t in (1, 2):
            torch.set_num_threads(t)
            results.append(tp.convolve(x, y, w, src, dst, 50))
    finally:
        torch.set_num_threads(threads)
    ref = reference(tp, x.double(), y.double(), w.double(), src, dst, 50)
    for out in results:
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-4)
    assert torch.equal(results[0], results[1])  # each atom sums its edges in one fixed order


def test_empty_edges_and_fallback():
    tp, x, y, w, src, dst = problem("4x0e+4x1o", 1, "4x0e+4x1o", n=3, n_edges=0)
    out = tp.convolve(x, y, w, src, dst, 3)
    assert out.shape == (3, tp.irreps_out.dim) and out.abs().max() == 0
    out.sum().backward()  # gradients of an empty sum exist and are zero
    assert x.grad.abs().max() == 0

    full = TensorProduct(
        "4x0e+4x1o", "0e+1o", fully_connected_paths("4x0e+4x1o", "0e+1o", "4x0e+4x1o")
    )
    x, y = torch.randn(3, 16, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    w = torch.randn(5, full.weight_numel, dtype=torch.float64)
    src, dst = torch.tensor([0, 1, 2, 2, 0]), torch.tensor([1, 2, 0, 1, 1])
    assert full.conv_spec is None  # "uvw" paths: the PyTorch composition
    torch.testing.assert_close(
        full.convolve(x, y, w, src, dst, 3), reference(full, x, y, w, src, dst, 3)
    )


@needs_kernel
def test_nequip_same_with_and_without_kernel(monkeypatch):
    """A whole model (energy, forces, and the force-loss gradient of training) is the same function
    on the fused kernel and on the PyTorch path (``EUCLIDNN_NATIVE=0`` / no compiler)."""
    from ase.build import molecule

    from euclidnn.data import Graph
    from euclidnn.models import NequIP, NequIPConfig, predict

    torch.manual_seed(0)
    model = NequIP(NequIPConfig(species=(1, 6, 8), lmax=2, num_features=8, num_layers=3)).double()
    graph = Graph.from_ase([molecule("CH3CH2OH"), molecule("H2O")], 4.0, torch.float64)

    def run():
        p = predict(model, graph, training=True)
        loss = p.forces.pow(2).sum()
        return p.energy, p.forces, torch.autograd.grad(loss, list(model.parameters()))

    fast = run()
    monkeypatch.setenv("EUCLIDNN_NATIVE", "0")
    slow = run()
    torch.testing.assert_close(fast[0], slow[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(fast[1], slow[1], rtol=0, atol=1e-12)
    for a, b in zip(fast[2], slow[2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


def test_a_kernel_that_cannot_be_built_falls_back_with_a_warning(monkeypatch, tmp_path):
    broken = tmp_path / "broken.c"
    broken.write_text("this is not C\n")
    old = kernels.conv.LIBRARY
    monkeypatch.setattr(kernels.conv, "LIBRARY", kernels.Library(broken, old.what, old.functions))
    monkeypatch.setenv("EUCLIDNN_NATIVE", "1")
    monkeypatch.setenv("EUCLIDNN_CACHE", str(tmp_path / "cache"))
    tp, x, y, w, src, dst = problem("4x0e+4x1o", 1, "4x0e+4x1o", n=3, n_edges=7)
    with pytest.warns(UserWarning, match="build failed"):
        out = tp.convolve(x, y, w, src, dst, 3)
    torch.testing.assert_close(out, reference(tp, x, y, w, src, dst, 3))
