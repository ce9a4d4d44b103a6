"""A tensor product with shared "uvw" weights through the C kernel (private; the maths is
:class:`euclidnn.o3.TensorProduct`'s, whose contraction stays the reference).

Where every path is a weighted "uvw" path on a multiplicity-1 second input (e3nn's
FullyConnectedTensorProduct of features with spherical harmonics or scalars) and the weights are
shared by all rows, each output term o (multiplicity W, degree l_out) is, with the paths p → o
side by side:

    T[z, k, q_p + u] = α_p Σ_ij C_p[i, j, k] x1[z, u, i] x2[z, j]     (the kernel's CG step)
    out_o[z, w, k]   = Σ_q T[z, k, q] W[q, w],  W[q_p + u, w] = W_p[u, w]

the first by the convolution kernel with each row its own node and one row of ones for its
weights (:func:`euclidnn.kernels.row_products`), the second one matrix product of
(rows · (2 l_out + 1)) by Σ_p mul1. (The contraction applies the weights first and then needs one
small matrix product per row, slow on a CPU.) Rows run in chunks, so that each product reads a
T the kernel has just written, still in cache; the backward recomputes T chunk by chunk instead
of keeping it. A backward that must itself be differentiated (``create_graph``) differentiates
the same steps written with autograd (:func:`_composition`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from euclidnn import kernels
from euclidnn.o3.irreps import Irreps

CHUNK_FLOATS = 1 << 20  # T of one chunk and term: 4 MB in float32, in cache for the product


class SharedTerm(NamedTuple):
    """One output term: its kernel entries, where its weights are, and where it goes."""

    spec: kernels.ConvSpec  # T[z, (k, q)]: each path into the term, its channels u at q_p + u
    index: Tensor  # W[q, w] = weight[index[q, w]]: the paths' weights stacked, [Σ_p mul1, W]
    d3: int  # 2 l_out + 1
    offset: int  # first output column of the term


class SharedProduct(NamedTuple):
    """The fused route of one TensorProduct: its terms and the output width."""

    terms: tuple[SharedTerm, ...]
    dim_out: int


def shared_product(
    irreps_in1: Irreps,
    irreps_in2: Irreps,
    irreps_out: Irreps,
    paths: Sequence,
    coefficients: Sequence[float],
    weight_sizes: Sequence[int],
    wigner_3j: Callable[[int, int, int], Tensor],
) -> SharedProduct | None:
    """The terms of the fused route, or None where a path is not a weighted "uvw" path on a
    multiplicity-1 second input (the contraction runs). x1 is read in the "ir_mul" layout."""
    if not (
        paths
        and all(p.mode == "uvw" and p.has_weight for p in paths)
        and all(mul == 1 for mul, _ in irreps_in2)
    ):
        return None
    offsets1, offsets2, offsets_out = (
        [s.start for s in i.slices()] for i in (irreps_in1, irreps_in2, irreps_out)
    )
    weight_offsets = list(itertools.accumulate(weight_sizes, initial=0))
    terms = []
    for o, (mul_out, ir_out) in enumerate(irreps_out):
        mine = [n for n, p in enumerate(paths) if p.i_out == o]
        if not mine:
            continue
        width = sum(irreps_in1[paths[n].i_in1].mul for n in mine)
        entries, values, index, q = [], [], [], 0
        for n in mine:
            p = paths[n]
            (mul1, ir1), (_, ir2) = irreps_in1[p.i_in1], irreps_in2[p.i_in2]
            cg = wigner_3j(ir1.l, ir2.l, ir_out.l).to(torch.float64)
            for i, j, k in (cg.abs() > 1e-12).nonzero().tolist():
                xo, yo = offsets1[p.i_in1] + i * mul1, offsets2[p.i_in2] + j
                entries.append((xo, yo, k * width + q, 0, mul1))
                values.append(coefficients[n] * cg[i, j, k].item())
            index.append(weight_offsets[n] + torch.arange(mul1 * mul_out).view(mul1, mul_out))
            q += mul1
        ones = max(irreps_in1[paths[n].i_in1].mul for n in mine)
        spec = kernels.ConvSpec(
            torch.tensor(entries, dtype=torch.int64).reshape(-1, 5),
            torch.tensor(values, dtype=torch.float64),
            (irreps_in1.dim, irreps_in2.dim, ones, ir_out.dim * width),
        )
        terms.append(SharedTerm(spec, torch.cat(index), ir_out.dim, offsets_out[o]))
    return SharedProduct(tuple(terms), irreps_out.dim)


def run(product: SharedProduct, x: Tensor, y: Tensor, weight: Tensor) -> Tensor:
    """The product of rows ``x`` (in "ir_mul" layout) and ``y`` with the flat shared ``weight``.

    Shapes: x: [z, dim1], y: [z, dim2], weight: [weight_numel] → [z, dim_out]
    """
    weights = [weight.index_select(0, t.index.view(-1)).view(t.index.shape) for t in product.terms]
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, y, *weights)):
        return _Fused.apply(product, x, y, *weights)
    return _forward(product, x, y, weights)


def _chunks(product: SharedProduct, z: int) -> list[tuple[int, int, kernels.Edges]]:
    """Row ranges whose T fits :data:`CHUNK_FLOATS`, each with its edges (row r → node r)."""
    widest = max(1, *(t.spec.dims[3] for t in product.terms))
    size = max(1, CHUNK_FLOATS // widest)
    edges = {}
    out = []
    for start in range(0, z, size):
        n = min(size, z - start)
        if n not in edges:
            edges[n] = kernels.Edges.one_per_row(n)
        out.append((start, start + n, edges[n]))
    return out


def _forward(product: SharedProduct, x: Tensor, y: Tensor, weights: Sequence[Tensor]) -> Tensor:
    """Chunk by chunk, term by term, no autograd: T by the kernel, then its product."""
    z = x.shape[0]
    x, y = x.contiguous(), y.contiguous()
    out = x.new_zeros(z, product.dim_out)
    for start, stop, edges in _chunks(product, z):
        n = stop - start
        for term, w in zip(product.terms, weights):
            ones = x.new_ones(1, term.spec.dims[2])
            t = kernels.conv_partial(term.spec, edges, 3, x[start:stop], y[start:stop], ones, None)
            width, mul_out = w.shape
            o = (t.view(n * term.d3, width) @ w).view(n, term.d3, mul_out)
            columns = out[start:stop, term.offset : term.offset + mul_out * term.d3]
            columns.view(n, mul_out, term.d3).copy_(o.transpose(1, 2))
    return out


def _composition(product: SharedProduct, x: Tensor, y: Tensor, weights: Sequence[Tensor]) -> Tensor:
    """The same steps with autograd nodes (any order of derivative), all rows at once."""
    z = x.shape[0]
    pieces, at = [], 0
    for term, w in zip(product.terms, weights):
        t = kernels.row_products(term.spec, x, y, x.new_ones(term.spec.dims[2]))
        width, mul_out = w.shape
        o = (t.view(z * term.d3, width) @ w).view(z, term.d3, mul_out)
        if term.offset > at:  # output terms no path reaches
            pieces.append(x.new_zeros(z, term.offset - at))
        pieces.append(o.transpose(1, 2).reshape(z, mul_out * term.d3))
        at = term.offset + mul_out * term.d3
    if at < product.dim_out:
        pieces.append(x.new_zeros(z, product.dim_out - at))
    return torch.cat(pieces, dim=1)


def _backward(
    product: SharedProduct,
    x: Tensor,
    y: Tensor,
    weights: Sequence[Tensor],
    grad: Tensor,
    needs: Sequence[bool],
) -> list[Tensor | None]:
    """The gradients of x, y and each term's weights (where ``needs`` says), chunk by chunk:
    T recomputed by the kernel, dW += Tᵀ g, dT = g Wᵀ, then dT through the kernel's partials."""
    z = x.shape[0]
    x, y, grad = x.contiguous(), y.contiguous(), grad.contiguous()
    dx = torch.zeros_like(x) if needs[0] else None
    dy = torch.zeros_like(y) if needs[1] else None
    dws = [torch.zeros_like(w) if need else None for w, need in zip(weights, needs[2:])]
    for start, stop, edges in _chunks(product, z):
        n = stop - start
        xc, yc = x[start:stop], y[start:stop]
        for term, w, dw in zip(product.terms, weights, dws):
            width, mul_out = w.shape
            ones = x.new_ones(1, term.spec.dims[2])
            g = grad[start:stop, term.offset : term.offset + mul_out * term.d3]
            g = g.view(n, mul_out, term.d3).transpose(1, 2).reshape(n * term.d3, mul_out)
            if dw is not None:
                t = kernels.conv_partial(term.spec, edges, 3, xc, yc, ones, None)
                dw.addmm_(t.view(n * term.d3, width).t(), g)
            if dx is None and dy is None:
                continue
            dt = (g @ w.t()).view(n, term.d3 * width)
            if dx is not None:
                dx[start:stop] += kernels.conv_partial(term.spec, edges, 0, None, yc, ones, dt)
            if dy is not None:
                dy[start:stop] += kernels.conv_partial(term.spec, edges, 1, xc, None, ones, dt)
    return [dx, dy, *dws]


class _Fused(torch.autograd.Function):
    """The chunked forward and backward; a differentiable backward through :func:`_composition`."""

    @staticmethod
    def forward(ctx, product: SharedProduct, x: Tensor, y: Tensor, *weights: Tensor) -> Tensor:
        ctx.product = product
        ctx.save_for_backward(x, y, *weights)
        return _forward(product, x, y, weights)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y, *weights = ctx.saved_tensors
        needs = ctx.needs_input_grad[1:]
        if not torch.is_grad_enabled():
            return None, *_backward(ctx.product, x, y, weights, grad, needs)
        # create_graph: the gradient must itself have a graph
        inputs = [t for t, need in zip((x, y, *weights), needs) if need]
        with torch.enable_grad():
            out = _composition(ctx.product, x, y, weights)
        grads = iter(torch.autograd.grad(out, inputs, grad, create_graph=True))
        return None, *(next(grads) if need else None for need in needs)
