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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
        offsets2 = [sum(self.dims2[:i]) for i in range(len(self.dims2))]
        dim2 = sum(self.dims2)

        # per-path weight sizes (e3nn layout); unweighted paths read an appended block of ones
        sizes = []
        for p in paths:
            n = _NUMEL[p.mode](
                irreps_in1[p.i_in1].mul, irreps_in2[p.i_in2].mul, irreps_out[p.i_out].mul
            )
            sizes.append(n)
        weighted = [n for n, p in enumerate(paths) if p.has_weight]
        unweighted = [n for n, p in enumerate(paths) if not p.has_weight]
        self.weight_sizes = [sizes[n] for n in weighted] + [sizes[n] for n in unweighted]
        self.num_ones = sum(sizes[n] for n in unweighted)
        slot = {n: k for k, n in enumerate(weighted + unweighted)}  # path -> index in weight.split

        cg = {
            n: coefficients[n]
            * wigner_3j(
                irreps_in1[p.i_in1].ir.l, irreps_in2[p.i_in2].ir.l, irreps_out[p.i_out].ir.l
            ).to(torch.float64)
            for n, p in enumerate(paths)
        }

        self.groups = []  # (i1, mul1, d1, buffer, split sizes of M, blocks)
        self.singles = []
        n_contrib = [0] * len(irreps_out)
        for p in paths:
            n_contrib[p.i_out] += 1
        for i1, (mul1, ir1) in enumerate(irreps_in1):
            members = [
                n for n, p in enumerate(paths) if p.i_in1 == i1 and irreps_in2[p.i_in2].mul == 1
            ]
            blocks: dict = {}
            for n in members:
                p = paths[n]
                key = ("uvu", irreps_out[p.i_out].ir.l) if p.mode == "uvu" else ("uvw", p.i_out)
                blocks.setdefault(key, []).append(n)
            if blocks:
                # all-uvu groups with d1 > 1 are "fused": one bmm per row over every path, with the
                # CG columns laid out [dim2, d1, Σ_blocks n_paths·d3]; otherwise [dim2, n_paths·d1·d3]
                fused = ir1.dim > 1 and all(kind == "uvu" for kind, _ in blocks)
                columns, block_specs = [], []
                for (kind, _), ns in blocks.items():
                    d3 = irreps_out[paths[ns[0]].i_out].ir.dim
                    stack = torch.zeros(dim2, len(ns), ir1.dim, d3, dtype=torch.float64)
                    for b, n in enumerate(ns):
                        p = paths[n]
                        d2 = irreps_in2[p.i_in2].ir.dim
                        stack[offsets2[p.i_in2] : offsets2[p.i_in2] + d2, b] = cg[n].permute(
                            1, 0, 2
                        )
                    if fused:
                        stack = stack.permute(0, 2, 1, 3).reshape(dim2, ir1.dim, -1)
                    columns.append(stack.reshape(dim2, -1) if not fused else stack)
                    outs = [paths[n].i_out for n in ns]
                    # written directly when the block's paths fill consecutive, otherwise empty terms
                    direct = (
                        kind == "uvu"
                        and outs == list(range(outs[0], outs[0] + len(outs)))
                        and all(n_contrib[o] == 1 for o in outs)
                    )
                    mul_out = irreps_out[paths[ns[0]].i_out].mul
                    block_specs.append(
                        (kind, [slot[n] for n in ns], outs, len(ns), d3, mul_out, direct)
                    )
                name = f"cg_group_{i1}"
                if fused:
                    m_sizes = [c.shape[-1] for c in columns]
                    self.register_buffer(
                        name, torch.cat(columns, dim=-1).reshape(dim2, -1), persistent=False
                    )
                else:
                    m_sizes = [c.shape[1] for c in columns]
                    self.register_buffer(name, torch.cat(columns, dim=1), persistent=False)
                self.groups.append((i1, mul1, ir1.dim, name, m_sizes, block_specs, fused))
            for n, p in enumerate(paths):
                if p.i_in1 == i1 and irreps_in2[p.i_in2].mul > 1:
                    (mul2, ir2), (mul_out, ir_out) = irreps_in2[p.i_in2], irreps_out[p.i_out]
                    name = f"cg_path_{n}"
                    self.register_buffer(name, cg[n], persistent=False)
                    self.singles.append(
                        (
                            p.mode,
                            p.i_in1,
                            p.i_in2,
                            p.i_out,
                            slot[n],
                            (mul1, ir1.dim, mul2, ir2.dim, mul_out, ir_out.dim),
                            name,
                        )
                    )
        self.direct_start = {}
        for *_, specs, _ in self.groups:
            for _kind, _, outs, _, _, _, direct in specs:
                if direct:
                    self.direct_start[outs[0]] = len(outs)

    def forward(self, x1: Tensor, x2: Tensor, weight: Tensor) -> Tensor:
        batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1], weight.shape[:-1])
        x1 = x1.expand(*batch, x1.shape[-1]).reshape(-1, x1.shape[-1])
        x2 = x2.expand(*batch, x2.shape[-1]).reshape(-1, x2.shape[-1])
        if weight.dim() > 1:  # one set of weights per row; else shared (kept unexpanded)
            weight = weight.expand(*batch, weight.shape[-1]).reshape(-1, weight.shape[-1])
        if self.num_ones:
            weight = torch.cat([weight, weight.new_ones(*weight.shape[:-1], self.num_ones)], dim=-1)
        lead = weight.shape[:-1]  # () for shared weights, (z,) per row
        z = x1.shape[0]
        x1_terms = x1.split(self.dims1, dim=-1)
        x2_terms = x2.split(self.dims2, dim=-1)
        w_paths = weight.split(self.weight_sizes, dim=-1)
        contributions: list[list[Tensor]] = [[] for _ in self.out_terms]
        direct: dict[int, Tensor] = {}

        for i1, mul1, d1, name, m_sizes, blocks, fused in self.groups:
            a = x1_terms[i1].view(z, mul1, d1)  # [z, u, i]
            if fused:  # T[z, u, (p, k)] = Σ_i a[z, u, i] M[z, i, (p, k)]: one bmm for all paths
                m_all = (x2 @ getattr(self, name).to(x1.dtype)).view(z, d1, sum(m_sizes))
                t_blocks = torch.bmm(a, m_all).split(m_sizes, dim=-1)
            else:
                cg_blocks = getattr(self, name).to(x1.dtype).split(m_sizes, dim=-1)
            for b, (kind, slots, outs, n_paths, d3, mul_out, is_direct) in enumerate(blocks):
                w = (
                    torch.cat([w_paths[s] for s in slots], dim=-1)
                    if n_paths > 1
                    else w_paths[slots[0]]
                )
                if fused:  # out[z, p, u, k] = W_p[z, u] T[z, u, p, k]
                    out = t_blocks[b].unflatten(-1, (n_paths, d3)).transpose(1, 2) * w.view(
                        *lead, n_paths, mul1, 1
                    )
                    if is_direct:
                        direct[outs[0]] = out.reshape(z, n_paths * mul1 * d3)
                    else:
                        for o, piece in zip(outs, out.unbind(1)):
                            contributions[o].append(piece)
                    continue
                m = (x2 @ cg_blocks[b]).view(z, n_paths, d1, d3)  # [z, p, i, k], contiguous
                if kind == "uvu":
                    aw = a.unsqueeze(1) * w.view(*lead, n_paths, mul1, 1)  # [z, p, u, i]
                    if d1 == 1:
                        out = aw * m  # [z, p, u, k]
                    else:
                        out = torch.bmm(
                            aw.reshape(z * n_paths, mul1, d1), m.view(z * n_paths, d1, d3)
                        )
                    if is_direct:
                        direct[outs[0]] = out.reshape(z, n_paths * mul1 * d3)
                    else:
                        for o, piece in zip(outs, out.unbind(1)):
                            contributions[o].append(piece)
                else:  # uvw: weights on x1 first, then one bmm over (p, i)
                    w = (
                        w.view(*lead, n_paths, mul1, mul_out)
                        .transpose(-3, -2)
                        .reshape(*lead, mul1, n_paths * mul_out)
                    )
                    y = torch.matmul(a.transpose(1, 2), w)  # [z, i, p*w]
                    y = (
                        y.view(z, d1, n_paths, mul_out)
                        .permute(0, 3, 2, 1)
                        .reshape(z, mul_out, n_paths * d1)
                    )
                    contributions[outs[0]].append(
                        torch.bmm(y, m.reshape(z, n_paths * d1, d3))
                    )  # [z, w, k]

        for mode, i1, i2, i_out, s, (mul1, d1, mul2, d2, mul_out, d3), name in self.singles:
            c = getattr(self, name).to(x1.dtype)
            a = x1_terms[i1].view(z, mul1, d1)
            b = x2_terms[i2].view(z, mul2, d2)
            m = torch.einsum("zvj,ijk->zvik", b, c)  # [z, v, i, k]
            w = w_paths[s]
            if mode in ("uuw", "uuu"):
                t = torch.einsum("zui,zuik->zuk", a, m)
                if mode == "uuu":
                    out = t * w.unsqueeze(-1)
                else:
                    out = torch.matmul(
                        t.transpose(1, 2), w.unflatten(-1, (mul1, mul_out))
                    ).transpose(1, 2)
            else:
                t = torch.einsum("zui,zvik->zuvk", a, m)  # [z, u, v, k]
                if mode == "uvw":
                    w = w.unflatten(-1, (mul1 * mul2, mul_out))
                    out = torch.matmul(
                        t.permute(0, 3, 1, 2).reshape(z, d3, mul1 * mul2), w
                    ).transpose(1, 2)
                elif mode == "uvu":
                    out = torch.matmul(w.unflatten(-1, (mul1, 1, mul2)), t).squeeze(-2)  # [z, u, k]
                else:  # uvv
                    w = (
                        w.unflatten(-1, (mul1, mul2)).transpose(-1, -2).unsqueeze(-2)
                    )  # [.., v, 1, u]
                    out = torch.matmul(w, t.transpose(1, 2)).squeeze(-2)  # [z, v, k]
            contributions[i_out].append(out)

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
        out = torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]
        return out.view(*batch, out.shape[-1])
