"""continuous_filter_conv (SchNet's convolution, fused on CPU) against index_select/index_add."""

from __future__ import annotations

import os

import pytest
import torch

from euclidnn import kernels
from euclidnn.nn import continuous_filter_conv


def reference(x, w, src, dst, n, row=None):
    w = w if row is None else w[row]
    return torch.zeros(n, x.shape[1], dtype=x.dtype).index_add(0, dst, x[src] * w)


@pytest.mark.parametrize("shared_rows", [False, True])
def test_matches_composition_to_second_order(shared_rows):
    if os.environ.get("EUCLIDNN_NATIVE", "1") == "0" or kernels.conv.LIBRARY.get() is None:
        pytest.skip("EUCLIDNN_NATIVE=0 or no C compiler: only the composition path runs")
    g = torch.Generator().manual_seed(3)
    n, e, f = 6, 25, 7
    src, dst = torch.randint(0, n, (e,), generator=g), torch.randint(0, n + 1, (e,), generator=g)
    row = torch.randint(0, 9, (e,), generator=g) if shared_rows else None
    x = torch.randn(n, f, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(
        9 if shared_rows else e, f, dtype=torch.float64, generator=g, requires_grad=True
    )
    out = continuous_filter_conv(x, w, src, dst, n + 1, row)
    ref = reference(x, w, src, dst, n + 1, row)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-13)
    # a force-like first derivative, then its derivative (force training)
    (gx,) = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
    (gx_ref,) = torch.autograd.grad(ref.pow(2).sum(), x, create_graph=True)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=1e-12)
    for a, b in zip(
        torch.autograd.grad(gx.sin().sum(), (x, w)), torch.autograd.grad(gx_ref.sin().sum(), (x, w))
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    fn = lambda x, w: continuous_filter_conv(x, w, src, dst, n + 1, row)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x, w))


def test_transposed_inputs_and_expanded_gradients_give_the_formula():
    """The issue's reproduction: transposed x and weight, and the expanded (stride-0) gradient
    of out.sum(), gave O(1) errors (the contiguous copies were freed before the C call)."""
    g = torch.Generator().manual_seed(0)
    n, f, e = 200, 64, 4000
    for _ in range(20):
        x = torch.randn(f, n, dtype=torch.float64, generator=g).t().requires_grad_()
        w = torch.randn(f, e, dtype=torch.float64, generator=g).t()
        src, dst = torch.randint(0, n, (e,), generator=g), torch.randint(0, n, (e,), generator=g)
        out = continuous_filter_conv(x, w, src, dst, n)
        torch.testing.assert_close(out, reference(x, w, src, dst, n), rtol=0, atol=1e-12)
        out.sum().backward()
        (want,) = torch.autograd.grad(reference(x, w, src, dst, n).sum(), x)
        torch.testing.assert_close(x.grad, want, rtol=0, atol=1e-12)
        big = torch.randn(n, 2 * f, dtype=torch.float64, generator=g)
        torch.testing.assert_close(
            continuous_filter_conv(big[:, ::2], w, src, dst, n),
            reference(big[:, ::2], w, src, dst, n),
            rtol=0,
            atol=1e-12,
        )


def test_int32_indices_are_accepted():
    """The issue's reproduction: int32 edge indices killed the process."""
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(5, 4, generator=g), torch.randn(6, 4, generator=g)
    src, dst = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 5, (6,), generator=g)
    out = continuous_filter_conv(x, w, src.int(), dst.int(), 5)
    torch.testing.assert_close(out, reference(x, w, src, dst, 5))
