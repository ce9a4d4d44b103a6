"""Equivariant linear map: mixes the multiplicities of each irrep, never the m components."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from euclidnn.o3.irreps import Irreps

__all__ = ["Linear"]


class _IrrepBlock(NamedTuple):
    """Every weight that maps one irrep: the input and output terms that carry it."""

    ins: list[int]  # terms of irreps_in with this irrep (mul > 0)
    outs: list[int]  # terms of irreps_out with this irrep (mul > 0)
    dim: int  # d = 2l + 1
    index: Tensor  # [Σ mul_in, Σ mul_out]: position of W[u, w] in the flat weight
    alpha: float  # 1 / √fan_in, fan_in = Σ mul_in


class _BlockPlan(NamedTuple):
    """What ``forward`` needs of one block: y[z·d, Σ mul_out] = x[z·d, Σ mul_in] @ W (+ b)."""

    dim: int
    mul_in: int  # Σ mul_in
    mul_out: int  # Σ mul_out
    # (start, stop) of a contiguous slice of the flat weight, or the name of an index buffer
    weights: tuple[int, int] | str
    has_bias: bool


class _ColumnPermutations(NamedTuple):
    """Column maps between e3nn's layout and the grouped one; see :func:`_column_permutations`."""

    perm_in: Tensor  # [irreps_in.dim]
    perm_out: Tensor  # [irreps_out.dim]
    width: int  # columns of the grouped output, the zero column included
    zero_fill: bool  # some output term reads the appended zero column


def _weight_offsets(
    irreps_in: Irreps, irreps_out: Irreps
) -> tuple[dict[tuple[int, int], int], int]:
    """Start of each block W_ij [mul_i, mul_j] in the flat weight (e3nn's order: i, then j).

    Returns ``(offsets, weight_numel)``; only pairs with equal irreps have a block.
    """
    offsets, n = {}, 0
    for i, (mul_in, ir_in) in enumerate(irreps_in):
        for j, (mul_out, ir_out) in enumerate(irreps_out):
            if ir_in == ir_out:
                offsets[i, j] = n
                n += mul_in * mul_out
    return offsets, n


def _irrep_blocks(
    irreps_in: Irreps, irreps_out: Irreps, offsets: dict[tuple[int, int], int]
) -> list[_IrrepBlock]:
    """One block per distinct output irrep that some input reaches, in sorted irrep order.

    Its rows are the input channels of every input term with that irrep, its columns the output
    channels of every output term with it: index[u, w] = offsets[i, j] + u_i·mul_j + w_j.
    """
    blocks = []
    for ir in sorted({ir for _, ir in irreps_out}):
        ins = [i for i, (mul, ir_in) in enumerate(irreps_in) if ir_in == ir and mul > 0]
        outs = [j for j, (mul, ir_out) in enumerate(irreps_out) if ir_out == ir and mul > 0]
        if not ins or not outs:
            continue
        fan_in = sum(irreps_in[i].mul for i in ins)
        index = torch.cat(
            [
                torch.cat(
                    [
                        offsets[i, j]
                        + torch.arange(irreps_in[i].mul * irreps_out[j].mul).view(
                            irreps_in[i].mul, irreps_out[j].mul
                        )
                        for j in outs
                    ],
                    dim=1,
                )
                for i in ins
            ],
            dim=0,
        )
        blocks.append(_IrrepBlock(ins, outs, ir.dim, index, 1.0 / math.sqrt(fan_in)))
    return blocks


def _column_permutations(
    irreps_in: Irreps, irreps_out: Irreps, blocks: list[_IrrepBlock]
) -> _ColumnPermutations:
    """Column permutations into and out of the grouped layout: block after block, component-major.

    Inside a block with d = 2l+1 the input columns run (c, i, u) — a [d, Σ mul_in] grid — and the
    output columns (c, j, w), so that the block is one product [rows·d, Σ mul_in] × [Σ mul_in,
    Σ mul_out]. e3nn's layout is (u, c) inside each term. ``x_grouped = x[:, perm_in]``,
    ``y = y_grouped[:, perm_out]``; output columns that no block reaches read an appended zero
    column (index ``width - 1``).
    """
    offsets_in = [sum(m * ir.dim for m, ir in irreps_in[:i]) for i in range(len(irreps_in))]
    offsets_out = [sum(m * ir.dim for m, ir in irreps_out[:j]) for j in range(len(irreps_out))]
    perm_in: list[int] = []
    perm_out = torch.full((irreps_out.dim,), -1, dtype=torch.int64)
    column_out = 0
    for block in blocks:
        d, mul_out = block.dim, block.index.shape[1]
        for c in range(d):
            for i in block.ins:
                perm_in += [offsets_in[i] + u * d + c for u in range(irreps_in[i].mul)]
        v = column_out
        for j in block.outs:
            mul = irreps_out[j].mul
            cols = offsets_out[j] + torch.arange(mul * d).view(mul, d)  # e3nn: u·d + c
            perm_out[cols] = v + torch.arange(mul)[:, None] + mul_out * torch.arange(d)
            v += mul
        column_out += d * mul_out
    zero_fill = bool((perm_out < 0).any())  # output terms no input reaches …
    perm_out[perm_out < 0] = column_out  # … read an appended zero column
    perm_in = torch.tensor(perm_in, dtype=torch.int64)
    return _ColumnPermutations(perm_in, perm_out, column_out + zero_fill, zero_fill)


def _weight_scale(blocks: list[_IrrepBlock], weight_numel: int) -> Tensor:
    """α = 1/√fan_in of every flat weight, set block by block (each weight lies in one block).

    Shapes: → [weight_numel] float64
    """
    scale = torch.zeros(weight_numel, dtype=torch.float64)
    for block in blocks:
        scale[block.index.flatten()] = block.alpha
    return scale


def _bias_index(irreps_out: Irreps, bias_terms: list[int], n_bias: int) -> Tensor:
    """Which bias each output column adds: b[k] on the 0e terms, n_bias (an appended 0) elsewhere.

    Shapes: → [irreps_out.dim]
    """
    offsets = [sum(m * ir.dim for m, ir in irreps_out[:j]) for j in bias_terms]
    bias_index = torch.full((irreps_out.dim,), n_bias, dtype=torch.int64)
    k = 0
    for j, o in zip(bias_terms, offsets):
        bias_index[o : o + irreps_out[j].mul] = torch.arange(k, k + irreps_out[j].mul)
        k += irreps_out[j].mul
    return bias_index


def _is_identity(perm: Tensor, n: int) -> bool:
    """Whether ``perm`` is 0, 1, …, n − 1 (then the permutation is skipped)."""
    return perm.shape[0] == n and torch.equal(perm, torch.arange(n))


class Linear(nn.Module):
    r"""Equivariant linear layer between two irreps (e3nn's ``o3.Linear``, same weights and layout).

    out_{j}[w, m] = Σ_{i : ir_i = ir_j} (1 / sqrt(Σ_{i' : ir_i' = ir_j} mul_i')) Σ_u W_{ij}[u, w] x_i[u, m]  (+ b_j[w] if ir_j = 0e)

    Schur's lemma allows only this: a map commuting with every D(g) is a multiple of the
    identity on each irrep, so only multiplicity channels of equal irreps are mixed. Weights are
    N(0, 1), the 1/sqrt(fan_in) factor is applied in the forward pass ("element" path
    normalization), so unit-variance inputs give unit-variance outputs. Biases (on 0e outputs
    only; any other bias would break equivariance) start at zero. The flat ``weight`` holds the
    blocks W_ij [mul_i, mul_j] in the order (i over irreps_in, j over irreps_out), as in e3nn.
    Output terms that no input reaches are zero.

    Args:
        irreps_in: input irreps.
        irreps_out: output irreps.
        biases: add a learnable bias to every 0e output term.

    Shapes: x: [..., irreps_in.dim] → [..., irreps_out.dim]

    >>> lin = Linear("4x0e + 2x1o", "3x0e + 1x1o")
    >>> lin(torch.randn(10, 10)).shape, lin.weight.numel()
    (torch.Size([10, 6]), 14)
    """

    def __init__(
        self, irreps_in: Irreps | str, irreps_out: Irreps | str, *, biases: bool = False
    ) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps_in)
        self.irreps_out = Irreps(irreps_out)
        offsets, n = _weight_offsets(self.irreps_in, self.irreps_out)
        self.weight_numel = n
        self.weight = nn.Parameter(torch.randn(n))
        blocks = _irrep_blocks(self.irreps_in, self.irreps_out, offsets)

        scalar_outs = [
            j for j, (mul, ir) in enumerate(self.irreps_out) if ir.l == 0 and ir.p == 1 and mul > 0
        ]
        self.bias_terms = scalar_outs if biases else []
        n_bias = sum(self.irreps_out[j].mul for j in self.bias_terms)
        self.bias = nn.Parameter(torch.zeros(n_bias)) if biases else None

        # The forward pass works in a "grouped" column layout (see _column_permutations), so that
        # a block is one matrix product with no zeros; no permutation where the layouts agree.
        self.plan = [self._block_plan(k, block) for k, block in enumerate(blocks)]
        # biases on 0e outputs that no input reaches (no block): added to the output
        self.bias_alone = bool(self.bias_terms) and not any(b.has_bias for b in self.plan)
        bias_index = _bias_index(self.irreps_out, self.bias_terms, n_bias)
        self.register_buffer(
            "bias_index", bias_index if self.bias_alone else None, persistent=False
        )
        perms = _column_permutations(self.irreps_in, self.irreps_out, blocks)
        self.zero_fill = perms.zero_fill
        # kept in float64 outside the buffers (a float32 model moved to float64 keeps α exact)
        self._scale = {(torch.float64, torch.device("cpu")): _weight_scale(blocks, n)}
        self.widths = [b.dim * b.mul_in for b in self.plan]  # of the input blocks
        perm_in = None if _is_identity(perms.perm_in, self.irreps_in.dim) else perms.perm_in
        perm_out = None if _is_identity(perms.perm_out, perms.width) else perms.perm_out
        self.register_buffer("perm_in", perm_in, persistent=False)
        self.register_buffer("perm_out", perm_out, persistent=False)

    def _block_plan(self, k: int, block: _IrrepBlock) -> _BlockPlan:
        """The block's product; its weights are a slice of the flat weight where they are
        contiguous, otherwise gathered through a (non-persistent) index buffer ``index_{k}``."""
        mul_in, mul_out = block.index.shape
        index = block.index.flatten()
        start = int(index[0])
        if torch.equal(index, torch.arange(start, start + index.numel())):
            weights = (start, start + index.numel())  # a contiguous slice: no gather
        else:
            weights = f"index_{k}"
            self.register_buffer(weights, index, persistent=False)
        has_bias = block.outs[0] in self.bias_terms  # the 0e block: all its outputs have biases
        return _BlockPlan(block.dim, mul_in, mul_out, weights, has_bias)

    def degree_index(self, l: int) -> tuple[Tensor, Tensor]:  # noqa: E741
        """Where the weights acting on degree ``l`` sit, as one matrix over all its terms.

        Rows are the channels of the terms of degree l of ``irreps_in`` (term after term, in
        order), columns those of ``irreps_out``. With ``W_l = weight[index] * scale``, the map
        restricted to degree l is ``y[..., m, :] = x[..., m, :] @ W_l`` for every component m
        (biases apart): ``scale`` is 1/sqrt(fan_in) where the two terms carry the same irrep and
        0 (with ``index`` 0) between different parities. A caller that keeps its features per
        degree multiplies them by W_l directly, with no permutation.

        Shapes: → (index [Σ mul_in(l), Σ mul_out(l)] int64, scale [same] float64)

        >>> index, scale = Linear("2x0e + 1x0o", "1x0e + 1x0o").degree_index(0)
        >>> index.tolist(), scale.tolist()
        ([[0, 0], [1, 0], [0, 2]], [[0.7071067811865475, 0.0], [0.7071067811865475, 0.0], [0.0, 1.0]])
        """
        offsets, _ = _weight_offsets(self.irreps_in, self.irreps_out)
        ins = [(i, mul, ir) for i, (mul, ir) in enumerate(self.irreps_in) if ir.l == l]
        outs = [(j, mul, ir) for j, (mul, ir) in enumerate(self.irreps_out) if ir.l == l]
        fan_in = {ir: sum(mul for _, mul, ir_in in ins if ir_in == ir) for _, _, ir in ins}
        rows, cols = sum(mul for _, mul, _ in ins), sum(mul for _, mul, _ in outs)
        index = torch.zeros(rows, cols, dtype=torch.int64)
        scale = torch.zeros(rows, cols, dtype=torch.float64)
        a = 0
        for i, mul_in, ir_in in ins:
            b = 0
            for j, mul_out, ir_out in outs:
                if ir_in == ir_out and mul_in * mul_out > 0:
                    block = torch.arange(mul_in * mul_out).view(mul_in, mul_out)
                    index[a : a + mul_in, b : b + mul_out] = offsets[i, j] + block
                    scale[a : a + mul_in, b : b + mul_out] = 1.0 / math.sqrt(fan_in[ir_in])
                b += mul_out
            a += mul_in
        return index, scale

    def dense_matrix(self, dtype: torch.dtype | None = None) -> Tensor:
        """The map as a matrix M with ``forward(x) = x @ M (+ bias)``.

        Shapes: → [irreps_in.dim, irreps_out.dim]
        """
        eye = torch.eye(self.irreps_in.dim, dtype=dtype or self.weight.dtype)
        matrix = self(eye.to(self.weight.device))
        return matrix if self.bias is None else matrix - self(torch.zeros_like(eye[:1]))

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        z = x.shape[0]
        key = (x.dtype, x.device)
        if key not in self._scale:  # a constant: cached per dtype and device
            self._scale[key] = self._scale[torch.float64, torch.device("cpu")].to(*key[::-1])
        weight = self.weight.to(x.dtype) * self._scale[key]
        if self.perm_in is not None:
            x = x.index_select(1, self.perm_in)  # into the grouped layout
        out = []
        for xb, (d, mul_in, mul_out, weights, has_bias) in zip(x.split(self.widths, 1), self.plan):
            xb = xb.reshape(z * d, mul_in)
            if isinstance(weights, tuple):
                w = weight[weights[0] : weights[1]].view(mul_in, mul_out)
            else:
                w = weight.index_select(0, getattr(self, weights)).view(mul_in, mul_out)
            y = torch.addmm(self.bias.to(x.dtype), xb, w) if has_bias else torch.mm(xb, w)
            out.append(y.view(z, d * mul_out))
        if self.zero_fill:
            out.append(x.new_zeros(z, 1))
        y = torch.cat(out, dim=1) if len(out) > 1 else out[0] if out else x.new_zeros(z, 0)
        if self.perm_out is not None:
            y = y.index_select(1, self.perm_out)  # back to e3nn's layout
        if self.bias_alone:
            bias = torch.cat([self.bias.to(x.dtype), self.bias.new_zeros(1, dtype=x.dtype)])
            y = y + bias.index_select(0, self.bias_index)
        return y.view(*batch, self.irreps_out.dim)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}, weight_numel={self.weight_numel}, biases={self.bias is not None}"
