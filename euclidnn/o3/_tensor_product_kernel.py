"""The contraction behind :class:`euclidnn.o3.TensorProduct` (private; same maths, grouped for speed).

Paths that share their first input term ``i_in1`` and whose second input has multiplicity 1
(spherical harmonics, the convolution case) are evaluated together, in two matrix products:

    M[z, i, K] = Σ_j x2[z, j] C[j, i, K]           one (dim2 × d1·K) matmul; C stacks α_p C_p of all paths
    T[z, u, K] = Σ_i x1[z, u, i] M[z, i, K]        one batched matmul over the batch z

after which each path applies its weights to its slice K_p of T: "uvu" is a broadcast product
T_p · W_p[u], "uvw" is Σ_{u, p→out} T_p[z, u, k] W_p[u, w] (one einsum per output term and
first input). Other paths (second input with multiplicity > 1) use a per-path contraction.
Tensors are cut with ``split`` (one backward concatenation) rather than repeated slicing.
All loops run over paths at trace time; ``torch.compile`` sees straight-line tensor code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from euclidnn.o3.irreps import Irreps


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

        # weight offsets in the e3nn layout; unweighted paths read from an appended block of ones
        self.weight_numel = 0
        self.num_ones = 0
        offsets, ones_offsets = [], []
        for p in paths:
            mul1, mul2, mul_out = irreps_in1[p.i_in1].mul, irreps_in2[p.i_in2].mul, irreps_out[p.i_out].mul
            numel = {"uvw": mul1 * mul2 * mul_out, "uvu": mul1 * mul2, "uvv": mul1 * mul2,
                     "uuw": mul1 * mul_out, "uuu": mul1}[p.mode]
            if p.has_weight:
                offsets.append(self.weight_numel)
                self.weight_numel += numel
            else:
                offsets.append(None)
                ones_offsets.append(self.num_ones)
                self.num_ones += numel
        offsets = [self.weight_numel + ones_offsets.pop(0) if o is None else o for o in offsets]

        # group A: per first input, all paths whose second input has multiplicity 1
        self.groups = []  # (i1, mul1, d1, buffer name, [(kind, i_out, k_size, weight spec)])
        self.singles = []  # (path index, mode, i1, i2, i_out, shape info, buffer name)
        for i1, (mul1, ir1) in enumerate(irreps_in1):
            members = [(n, p) for n, p in enumerate(paths) if p.i_in1 == i1 and irreps_in2[p.i_in2].mul == 1]
            # uvu first, then the rest grouped by output term: contiguous blocks of T
            members.sort(key=lambda np_: (np_[1].mode != "uvu", np_[1].i_out, np_[0]))
            if members:
                k_sizes = [irreps_out[p.i_out].ir.dim for _, p in members]
                big = torch.zeros(dim2, ir1.dim, sum(k_sizes), dtype=torch.float64)
                entries, k0 = [], 0
                for (n, p), k in zip(members, k_sizes):
                    ir2, (mul_out, ir_out) = irreps_in2[p.i_in2].ir, irreps_out[p.i_out]
                    cg = coefficients[n] * wigner_3j(ir1.l, ir2.l, ir_out.l).to(torch.float64)  # [i, j, k]
                    big[offsets2[p.i_in2] : offsets2[p.i_in2] + ir2.dim, :, k0 : k0 + k] = cg.permute(1, 0, 2)
                    k0 += k
                    if p.mode == "uvu":
                        entries.append(("uvu", p.i_out, k, offsets[n], (mul1,)))
                    else:  # with mul2 = 1 the modes uvv, uuw, uuu are uvw with some sizes 1
                        entries.append(("uvw", p.i_out, k, offsets[n], (mul1, mul_out)))
                name = f"cg_group_{i1}"
                self.register_buffer(name, big.reshape(dim2, -1), persistent=False)
                self.groups.append((i1, mul1, ir1.dim, name, entries))
            for n, p in enumerate(paths):
                if p.i_in1 == i1 and irreps_in2[p.i_in2].mul > 1:
                    (mul2, ir2), (mul_out, ir_out) = irreps_in2[p.i_in2], irreps_out[p.i_out]
                    cg = coefficients[n] * wigner_3j(ir1.l, ir2.l, ir_out.l).to(torch.float64)
                    name = f"cg_path_{n}"
                    self.register_buffer(name, cg, persistent=False)
                    self.singles.append((p.mode, p.i_in1, p.i_in2, p.i_out, offsets[n],
                                         (mul1, ir1.dim, mul2, ir2.dim, mul_out, ir_out.dim), name))

    def forward(self, x1: Tensor, x2: Tensor, weight: Tensor) -> Tensor:
        batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1], weight.shape[:-1])
        x1 = x1.expand(*batch, x1.shape[-1]).reshape(-1, x1.shape[-1])
        x2 = x2.expand(*batch, x2.shape[-1]).reshape(-1, x2.shape[-1])
        if weight.dim() > 1:  # one set of weights per row; else shared (kept unexpanded)
            weight = weight.expand(*batch, weight.shape[-1]).reshape(-1, weight.shape[-1])
        if self.num_ones:
            ones = weight.new_ones(*weight.shape[:-1], self.num_ones)
            weight = torch.cat([weight, ones], dim=-1)
        z = x1.shape[0]
        x1_terms = x1.split(self.dims1, dim=-1)
        x2_terms = x2.split(self.dims2, dim=-1)
        contributions: list[list[Tensor]] = [[] for _ in self.out_terms]

        for i1, mul1, d1, name, entries in self.groups:
            cg = getattr(self, name).to(x1.dtype)
            m = (x2 @ cg).view(z, d1, -1)  # [z, i, K]
            a = x1_terms[i1].view(z, mul1, d1)  # [z, u, i]
            t = a * m if d1 == 1 else torch.bmm(a, m)  # [z, u, K]
            blocks = t.split([e[2] for e in entries], dim=-1)
            for (kind, i_out, _, offset, shape), block in zip(entries, blocks):
                mul_out, d_out = self.out_terms[i_out]
                w = weight[..., offset : offset + _prod(shape)]
                if kind == "uvu":
                    contributions[i_out].append(block * w.unsqueeze(-1))  # [z, u, k]
                else:
                    w = w.unflatten(-1, shape)  # [..., u, w]
                    contributions[i_out].append(torch.matmul(block.transpose(1, 2), w).transpose(1, 2))

        for mode, i1, i2, i_out, offset, (mul1, d1, mul2, d2, mul_out, d3), name in self.singles:
            cg = getattr(self, name).to(x1.dtype)
            a = x1_terms[i1].view(z, mul1, d1)
            b = x2_terms[i2].view(z, mul2, d2)
            m = torch.einsum("zvj,ijk->zvik", b, cg)  # [z, v, i, k]
            if mode in ("uuw", "uuu"):
                t = torch.einsum("zui,zuik->zuk", a, m)
                if mode == "uuu":
                    out = t * weight[..., offset : offset + mul1].unsqueeze(-1)
                else:
                    w = weight[..., offset : offset + mul1 * mul_out].unflatten(-1, (mul1, mul_out))
                    out = torch.matmul(t.transpose(1, 2), w).transpose(1, 2)
            else:
                t = torch.einsum("zui,zvik->zuvk", a, m)  # [z, u, v, k]
                if mode == "uvw":
                    w = weight[..., offset : offset + mul1 * mul2 * mul_out].unflatten(-1, (mul1 * mul2, mul_out))
                    out = torch.matmul(t.permute(0, 3, 1, 2).reshape(z, d3, mul1 * mul2), w).transpose(1, 2)
                elif mode == "uvu":
                    w = weight[..., offset : offset + mul1 * mul2].unflatten(-1, (mul1, 1, mul2))
                    out = torch.matmul(w, t).squeeze(-2)  # [z, u, k]
                else:  # uvv
                    w = weight[..., offset : offset + mul1 * mul2].unflatten(-1, (mul1, mul2)).transpose(-1, -2)
                    out = torch.matmul(w.unsqueeze(-2), t.transpose(1, 2)).squeeze(-2)  # [z, v, k]
            contributions[i_out].append(out)

        pieces = []
        for (mul_out, d_out), terms in zip(self.out_terms, contributions):
            if not terms:
                pieces.append(x1.new_zeros(z, mul_out * d_out))
                continue
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            pieces.append(total.reshape(z, mul_out * d_out))
        return torch.cat(pieces, dim=-1).view(*batch, -1)


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
