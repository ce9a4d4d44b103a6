"""The contraction behind :class:`euclidnn.o3.TensorProduct` (private; same maths, grouped for speed).

Paths whose second input has multiplicity 1 (spherical harmonics: the convolution case) and
that share their first input term ``i_in1`` are evaluated together. First, one matmul contracts
x2 with the stacked, pre-scaled Clebsch–Gordan tensors of all of them:

    M[z, p, i, k] = Σ_j x2[z, j] α_p C_p[j, i, k]                       (x2 @ C_stack)

Then, per *block* of paths with the same output degree l_out:

    "uvu": out[z, p, u, k] = Σ_i (W_p[z, u] x1[z, u, i]) M[z, p, i, k]   batched matmul; the
           result is already in the output layout (path-major, then u, then k), so the block is
           written with a single reshape when its paths fill consecutive output terms
           (:func:`~euclidnn.o3.uvu_paths` orders them so). When every path of the group is
           "uvu" and d1 > 1, the group is "fused" instead: T[z, u, (p, k)] = Σ_i x1[z, u, i]
           M[z, i, (p, k)] is one bmm per row for all paths, then out = W_p[z, u] T (CPU bmm is
           slow for many tiny matrices, e.g. 3×3 per path);
    "uvw": out[z, w, k] = Σ_{p, i} Y[z, w, p, i] M[z, p, i, k],  Y = Σ_u x1[z, u, i] W_p[u, w]
           (the weights are applied to x1 first, then one bmm sums over paths and i).

Modes "uvv", "uuw", "uuu" with mul2 = 1 are "uvw" with some sizes 1. Paths whose second input
has multiplicity > 1 use a per-path contraction. Inputs and weights are cut with ``split``
(one concatenation in backward) rather than repeated slicing. Loops over blocks run at trace
time, so ``torch.compile`` sees straight-line tensor code.

Each step is a function that states its shapes: ``_uvu_fused``, ``_uvu`` and ``_uvw`` evaluate
one block, ``_single_path`` one path with mul2 > 1, and ``GroupedContraction._assemble`` puts
the output together term by term.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from euclidnn.o3.irreps import Irreps

_NUMEL = {
    "uvw": lambda m1, m2, mo: m1 * m2 * mo,
    "uvu": lambda m1, m2, mo: m1 * m2,
    "uvv": lambda m1, m2, mo: m1 * m2,
    "uuw": lambda m1, m2, mo: m1 * mo,
    "uuu": lambda m1, m2, mo: m1,
}


class _Block(NamedTuple):
    """Paths of one group evaluated together: "uvu" paths with the same l_out, or the other
    modes' paths ("uvw" kind) with the same output term."""

    kind: str  # "uvu" or "uvw"
    slots: list[int]  # each path's index in weight.split(weight_sizes)
    outs: list[int]  # each path's output term
    n_paths: int
    d3: int  # 2 l_out + 1
    mul_out: int  # multiplicity of the first path's output term
    direct: bool  # "uvu" paths that fill consecutive output terms no other path reaches


class _Group(NamedTuple):
    """The paths from one term of x1 whose x2 term has multiplicity 1: M = x2 @ C_stack once."""

    i1: int  # term of irreps_in1
    mul1: int
    d1: int
    cg_name: str  # buffer with C_stack (α_p C_p of every path), [dim2, Σ m_sizes]
    m_sizes: list[int]  # columns of M that belong to each block
    blocks: list[_Block]
    fused: bool  # every block "uvu" and d1 > 1: one bmm for all of them


class _SinglePath(NamedTuple):
    """A path whose x2 term has multiplicity > 1: contracted on its own."""

    mode: str
    i1: int
    i2: int
    i_out: int
    slot: int  # index in weight.split(weight_sizes)
    mul1: int
    d1: int
    mul2: int
    d2: int
    mul_out: int
    d3: int
    cg_name: str  # buffer with α_p C_p, [d1, d2, d3]


def _weight_layout(
    irreps_in1: Irreps, irreps_in2: Irreps, irreps_out: Irreps, paths: Sequence
) -> tuple[list[int], int, dict[int, int]]:
    """How the flat weight splits into paths (e3nn's layout: the weighted paths in order).

    Unweighted paths read an appended block of ones, after the weighted ones.
    Returns ``(split sizes, number of ones, path index → index in the split)``.
    """
    sizes = []
    for p in paths:
        n = _NUMEL[p.mode](
            irreps_in1[p.i_in1].mul, irreps_in2[p.i_in2].mul, irreps_out[p.i_out].mul
        )
        sizes.append(n)
    weighted = [n for n, p in enumerate(paths) if p.has_weight]
    unweighted = [n for n, p in enumerate(paths) if not p.has_weight]
    split_sizes = [sizes[n] for n in weighted] + [sizes[n] for n in unweighted]
    num_ones = sum(sizes[n] for n in unweighted)
    slot = {n: k for k, n in enumerate(weighted + unweighted)}
    return split_sizes, num_ones, slot


def _cg_stack(
    paths: Sequence, cgs: Sequence[Tensor], offsets2: list[int], dim2: int, d1: int, d3: int
) -> Tensor:
    """The (pre-scaled) CG tensors of a block's paths, stacked and placed at their x2 columns.

    C_stack[j, p, i, k] = α_p C_p[i, j − offset2_p, k] for the columns j of path p's x2 term,
    0 elsewhere, so that Σ_j x2[z, j] C_stack[j, p, i, k] = M[z, p, i, k].

    Shapes: cgs: [d1, d2_p, d3] each → [dim2, n_paths, d1, d3] float64
    """
    stack = torch.zeros(dim2, len(paths), d1, d3, dtype=torch.float64)
    for b, (p, cg) in enumerate(zip(paths, cgs)):
        d2 = cg.shape[1]
        stack[offsets2[p.i_in2] : offsets2[p.i_in2] + d2, b] = cg.permute(1, 0, 2)
    return stack


def _block_weights(w_paths: Sequence[Tensor], block: _Block) -> Tensor:
    """The weights of a block's paths side by side. Shapes: → [..., Σ_p numel_p]"""
    if block.n_paths > 1:
        return torch.cat([w_paths[s] for s in block.slots], dim=-1)
    return w_paths[block.slots[0]]


def _uvu_fused(t: Tensor, w: Tensor, lead: torch.Size, mul1: int, block: _Block) -> Tensor:
    """out[z, p, u, k] = W_p[z, u] T[z, u, p, k], T from the group's one bmm.

    Shapes: t: [z, u, p·k], w: [*lead, p·u] → [z, p, u, k]
    """
    n_paths, d3 = block.n_paths, block.d3
    return t.unflatten(-1, (n_paths, d3)).transpose(1, 2) * w.view(*lead, n_paths, mul1, 1)


def _uvu(a: Tensor, m: Tensor, w: Tensor, lead: torch.Size) -> Tensor:
    """out[z, p, u, k] = Σ_i (W_p[z, u] a[z, u, i]) M[z, p, i, k]: a batched matmul over (z, p).

    Shapes: a: [z, u, i], m: [z, p, i, k], w: [*lead, p·u] → [z, p, u, k]
    """
    z, n_paths, d1, d3 = m.shape
    mul1 = a.shape[1]
    aw = a.unsqueeze(1) * w.view(*lead, n_paths, mul1, 1)  # [z, p, u, i]
    if d1 == 1:
        return aw * m  # [z, p, u, k]
    out = torch.bmm(aw.reshape(z * n_paths, mul1, d1), m.view(z * n_paths, d1, d3))
    return out.view(z, n_paths, mul1, d3)


def _uvw(a: Tensor, m: Tensor, w: Tensor, lead: torch.Size, mul_out: int) -> Tensor:
    """out[z, w, k] = Σ_{p, i} Y[z, w, p, i] M[z, p, i, k],  Y[z, w, p, i] = Σ_u a[z, u, i] W_p[u, w].

    The weights are applied to x1 first, then one bmm sums over paths and i.

    Shapes: a: [z, u, i], m: [z, p, i, k], w: [*lead, p·u·w] → [z, w, k]
    """
    z, n_paths, d1, d3 = m.shape
    mul1 = a.shape[1]
    w = (
        w.view(*lead, n_paths, mul1, mul_out)
        .transpose(-3, -2)
        .reshape(*lead, mul1, n_paths * mul_out)
    )
    y = torch.matmul(a.transpose(1, 2), w)  # [z, i, p*w]
    y = y.view(z, d1, n_paths, mul_out).permute(0, 3, 2, 1).reshape(z, mul_out, n_paths * d1)
    return torch.bmm(y, m.reshape(z, n_paths * d1, d3))  # [z, w, k]


def _place_uvu(
    out: Tensor,
    block: _Block,
    z: int,
    mul1: int,
    contributions: list[list[Tensor]],
    direct: dict[int, Tensor],
) -> None:
    """File a "uvu" block's result [z, p, u, k]: as one run of output columns when the block
    fills its output terms alone ("direct"), otherwise path by path under its output term."""
    if block.direct:
        direct[block.outs[0]] = out.reshape(z, block.n_paths * mul1 * block.d3)
    else:
        for o, piece in zip(block.outs, out.unbind(1)):
            contributions[o].append(piece)


def _single_path(mode: str, a: Tensor, m: Tensor, w: Tensor, mul_out: int) -> Tensor:
    """One path with mul2 > 1, given M[z, v, i, k] = Σ_j x2[z, v, j] C[i, j, k]:

        "uvw": out[z, w, k] = Σ_{u,v} W[u, v, w] Σ_i a[z, u, i] M[z, v, i, k]
        "uvu": out[z, u, k] = Σ_v W[u, v] Σ_i a[z, u, i] M[z, v, i, k]
        "uvv": out[z, v, k] = Σ_u W[u, v] Σ_i a[z, u, i] M[z, v, i, k]
        "uuw": out[z, w, k] = Σ_u W[u, w] Σ_i a[z, u, i] M[z, u, i, k]
        "uuu": out[z, u, k] = W[u] Σ_i a[z, u, i] M[z, u, i, k]

    Shapes: a: [z, u, i], m: [z, v, i, k], w: [..., numel] → [z, mul_out, k]
    """
    z, mul1, _ = a.shape
    mul2, d3 = m.shape[1], m.shape[3]
    if mode in ("uuw", "uuu"):
        t = torch.einsum("zui,zuik->zuk", a, m)
        if mode == "uuu":
            return t * w.unsqueeze(-1)
        return torch.matmul(t.transpose(1, 2), w.unflatten(-1, (mul1, mul_out))).transpose(1, 2)
    t = torch.einsum("zui,zvik->zuvk", a, m)  # [z, u, v, k]
    if mode == "uvw":
        w = w.unflatten(-1, (mul1 * mul2, mul_out))
        t = t.permute(0, 3, 1, 2).reshape(z, d3, mul1 * mul2)  # [z, k, (u, v)]
        return torch.matmul(t, w).transpose(1, 2)
    if mode == "uvu":
        return torch.matmul(w.unflatten(-1, (mul1, 1, mul2)), t).squeeze(-2)  # [z, u, k]
    # uvv
    w = w.unflatten(-1, (mul1, mul2)).transpose(-1, -2).unsqueeze(-2)  # [.., v, 1, u]
    return torch.matmul(w, t.transpose(1, 2)).squeeze(-2)  # [z, v, k]


class GroupedContraction(nn.Module):
    """Σ_paths α_p W_p · (x1 ⊗ x2 contracted with C_p); see the module docstring.

    Shapes: x1: [..., dim1], x2: [..., dim2], weight: [..., weight_numel] or [weight_numel]
        → [..., dim_out]
    """

    def __init__(
        self,
        irreps_in1: Irreps,
        irreps_in2: Irreps,
        irreps_out: Irreps,
        paths: Sequence,
        coefficients: Sequence[float],
        wigner_3j: Callable[[int, int, int], Tensor],
    ) -> None:
        super().__init__()
        self.dims1 = [mul * ir.dim for mul, ir in irreps_in1]
        self.dims2 = [mul * ir.dim for mul, ir in irreps_in2]
        self.out_terms = [(mul, ir.dim) for mul, ir in irreps_out]
        self.weight_sizes, self.num_ones, slot = _weight_layout(
            irreps_in1, irreps_in2, irreps_out, paths
        )
        cg = {
            n: coefficients[n]
            * wigner_3j(
                irreps_in1[p.i_in1].ir.l, irreps_in2[p.i_in2].ir.l, irreps_out[p.i_out].ir.l
            ).to(torch.float64)
            for n, p in enumerate(paths)
        }
        n_contrib = [0] * len(irreps_out)
        for p in paths:
            n_contrib[p.i_out] += 1

        self.groups: list[_Group] = []
        self.singles: list[_SinglePath] = []
        for i1, (mul1, ir1) in enumerate(irreps_in1):
            members = [
                n for n, p in enumerate(paths) if p.i_in1 == i1 and irreps_in2[p.i_in2].mul == 1
            ]
            if members:
                group = self._group(
                    i1, mul1, ir1.dim, members, paths, cg, slot, irreps_in2, irreps_out, n_contrib
                )
                self.groups.append(group)
            for n, p in enumerate(paths):
                if p.i_in1 == i1 and irreps_in2[p.i_in2].mul > 1:
                    (mul2, ir2), (mul_out, ir_out) = irreps_in2[p.i_in2], irreps_out[p.i_out]
                    name = f"cg_path_{n}"
                    self.register_buffer(name, cg[n], persistent=False)
                    self.singles.append(
                        _SinglePath(
                            p.mode, p.i_in1, p.i_in2, p.i_out, slot[n],
                            mul1, ir1.dim, mul2, ir2.dim, mul_out, ir_out.dim, name,
                        )
                    )  # fmt: skip
        # output term → number of terms a direct block writes from there
        self.direct_start = {
            block.outs[0]: len(block.outs)
            for group in self.groups
            for block in group.blocks
            if block.direct
        }

    def _group(
        self,
        i1: int,
        mul1: int,
        d1: int,
        members: list[int],
        paths: Sequence,
        cg: dict[int, Tensor],
        slot: dict[int, int],
        irreps_in2: Irreps,
        irreps_out: Irreps,
        n_contrib: list[int],
    ) -> _Group:
        """Sort the paths of one x1 term (``members``, all with mul2 = 1) into blocks, and
        register their stacked CG tensors as the buffer ``cg_group_{i1}``.

        Its columns are [dim2, Σ_blocks n_paths·d1·d3], block after block, or — fused — laid out
        [dim2, d1, Σ_blocks n_paths·d3], so that x2 @ C_stack is M[z, i, (p, k)] for every path.
        """
        offsets2 = [sum(self.dims2[:i]) for i in range(len(self.dims2))]
        dim2 = sum(self.dims2)
        by_block: dict[tuple[str, int], list[int]] = {}
        for n in members:
            p = paths[n]
            key = ("uvu", irreps_out[p.i_out].ir.l) if p.mode == "uvu" else ("uvw", p.i_out)
            by_block.setdefault(key, []).append(n)
        fused = d1 > 1 and all(kind == "uvu" for kind, _ in by_block)
        columns, blocks = [], []
        for (kind, _), ns in by_block.items():
            mul_out, ir_out = irreps_out[paths[ns[0]].i_out]
            stack = _cg_stack(
                [paths[n] for n in ns], [cg[n] for n in ns], offsets2, dim2, d1, ir_out.dim
            )
            if fused:
                columns.append(stack.permute(0, 2, 1, 3).reshape(dim2, d1, -1))
            else:
                columns.append(stack.reshape(dim2, -1))
            outs = [paths[n].i_out for n in ns]
            direct = (
                kind == "uvu"
                and outs == list(range(outs[0], outs[0] + len(outs)))
                and all(n_contrib[o] == 1 for o in outs)
            )
            blocks.append(
                _Block(kind, [slot[n] for n in ns], outs, len(ns), ir_out.dim, mul_out, direct)
            )
        name = f"cg_group_{i1}"
        m_sizes = [c.shape[-1] for c in columns]
        stacked = torch.cat(columns, dim=-1)
        self.register_buffer(
            name, stacked.reshape(dim2, -1) if fused else stacked, persistent=False
        )
        return _Group(i1, mul1, d1, name, m_sizes, blocks, fused)

    def forward(self, x1: Tensor, x2: Tensor, weight: Tensor) -> Tensor:
        batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1], weight.shape[:-1])
        rows = math.prod(batch)  # not -1 in the reshapes: a width can be 0 (0x1o)
        x1 = x1.expand(*batch, x1.shape[-1]).reshape(rows, x1.shape[-1])
        x2 = x2.expand(*batch, x2.shape[-1]).reshape(rows, x2.shape[-1])
        if weight.dim() > 1:  # one set of weights per row; else shared (kept unexpanded)
            weight = weight.expand(*batch, weight.shape[-1]).reshape(rows, weight.shape[-1])
        if self.num_ones:
            weight = torch.cat([weight, weight.new_ones(*weight.shape[:-1], self.num_ones)], dim=-1)
        lead = weight.shape[:-1]  # () for shared weights, (z,) per row
        x1_terms = x1.split(self.dims1, dim=-1)
        x2_terms = x2.split(self.dims2, dim=-1)
        w_paths = weight.split(self.weight_sizes, dim=-1)
        contributions: list[list[Tensor]] = [[] for _ in self.out_terms]  # per output term
        direct: dict[int, Tensor] = {}  # first output term → a direct block's columns
        for group in self.groups:
            self._contract_group(
                group, x1_terms[group.i1], x2, w_paths, lead, contributions, direct
            )
        for path in self.singles:
            out = self._contract_single(
                path, x1_terms[path.i1], x2_terms[path.i2], w_paths[path.slot]
            )
            contributions[path.i_out].append(out)
        out = self._assemble(contributions, direct, x1)
        return out.view(*batch, out.shape[-1])

    def _contract_group(
        self,
        group: _Group,
        x1_term: Tensor,
        x2: Tensor,
        w_paths: Sequence[Tensor],
        lead: torch.Size,
        contributions: list[list[Tensor]],
        direct: dict[int, Tensor],
    ) -> None:
        """Every path of one group: M = x2 @ C_stack, then block by block by kind.

        Shapes: x1_term: [z, mul1·d1], x2: [z, dim2]; results go to ``contributions`` ([z, w, k]
        or [z, u, k] per path) or ``direct`` ([z, Σ mul·d3] per run of output terms).
        """
        z, mul1, d1 = x1_term.shape[0], group.mul1, group.d1
        a = x1_term.view(z, mul1, d1)  # [z, u, i]
        cg = getattr(self, group.cg_name).to(a.dtype)
        if group.fused:  # T[z, u, (p, k)] = Σ_i a[z, u, i] M[z, i, (p, k)]: one bmm for all paths
            m_all = (x2 @ cg).view(z, d1, sum(group.m_sizes))
            t_blocks = torch.bmm(a, m_all).split(group.m_sizes, dim=-1)
            for block, t in zip(group.blocks, t_blocks):
                w = _block_weights(w_paths, block)
                _place_uvu(
                    _uvu_fused(t, w, lead, mul1, block), block, z, mul1, contributions, direct
                )
            return
        for block, cg_block in zip(group.blocks, cg.split(group.m_sizes, dim=-1)):
            w = _block_weights(w_paths, block)
            m = (x2 @ cg_block).view(z, block.n_paths, d1, block.d3)  # [z, p, i, k], contiguous
            if block.kind == "uvu":
                _place_uvu(_uvu(a, m, w, lead), block, z, mul1, contributions, direct)
            else:
                contributions[block.outs[0]].append(_uvw(a, m, w, lead, block.mul_out))

    def _contract_single(
        self, path: _SinglePath, x1_term: Tensor, x2_term: Tensor, w: Tensor
    ) -> Tensor:
        """One path with mul2 > 1: M[z, v, i, k] = Σ_j x2[z, v, j] C[i, j, k], then by mode.

        Shapes: x1_term: [z, mul1·d1], x2_term: [z, mul2·d2], w: [..., numel] → [z, mul_out, d3]
        """
        z = x1_term.shape[0]
        c = getattr(self, path.cg_name).to(x1_term.dtype)
        a = x1_term.view(z, path.mul1, path.d1)  # [z, u, i]
        b = x2_term.view(z, path.mul2, path.d2)  # [z, v, j]
        m = torch.einsum("zvj,ijk->zvik", b, c)  # [z, v, i, k]
        return _single_path(path.mode, a, m, w, path.mul_out)

    def _assemble(
        self, contributions: list[list[Tensor]], direct: dict[int, Tensor], x1: Tensor
    ) -> Tensor:
        """The output, term after term: a direct block's columns as they are, any other term the
        sum of its contributions in path order, zeros for a term no path reaches.

        Shapes: x1: [z, dim1] (rows, dtype, device) → [z, dim_out]
        """
        z = x1.shape[0]
        pieces = []
        o = 0
        while o < len(self.out_terms):
            if o in direct:
                pieces.append(direct[o])
                o += self.direct_start[o]
                continue
            mul_out, d_out = self.out_terms[o]
            terms = contributions[o]
            if not terms:
                pieces.append(x1.new_zeros(z, mul_out * d_out))
            else:
                total = terms[0]
                for term in terms[1:]:
                    total = total + term
                pieces.append(total.reshape(z, mul_out * d_out))
            o += 1
        return torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]
