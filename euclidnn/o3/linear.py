"""Equivariant linear map: mixes the multiplicities of each irrep, never the m components."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from euclidnn.o3.irreps import Irreps

__all__ = ["Linear"]


# one dense matmul (see Linear.dense_matrix) while rows × dim_in × dim_out stays below this: the
# dense matrix wastes multiplications on zeros, but for a few atoms per-op overhead dominates
DENSE_MAX_MACS = 1 << 23
DENSE_MAX_ENTRIES = 1 << 20  # and only for maps whose dense matrix has at most this many entries


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
        pairs = [
            (i, j)
            for i, (_, ir_in) in enumerate(self.irreps_in)
            for j, (_, ir_out) in enumerate(self.irreps_out)
            if ir_in == ir_out
        ]
        offsets, n = {}, 0
        for i, j in pairs:
            offsets[i, j] = n
            n += self.irreps_in[i].mul * self.irreps_out[j].mul
        self.weight_numel = n
        self.weight = nn.Parameter(torch.randn(n))

        # one dense block per distinct irrep: rows = its input channels, columns = its output channels
        self.blocks = []  # (in terms, out terms, buffer names)
        for k, ir in enumerate(sorted({ir for _, ir in self.irreps_out})):
            ins = [
                i
                for i, (_, ir_in) in enumerate(self.irreps_in)
                if ir_in == ir and self.irreps_in[i].mul > 0
            ]
            outs = [
                j for j, (mul, ir_out) in enumerate(self.irreps_out) if ir_out == ir and mul > 0
            ]
            if not ins or not outs:
                continue
            fan_in = sum(self.irreps_in[i].mul for i in ins)
            index = torch.cat(
                [
                    torch.cat(
                        [
                            offsets[i, j]
                            + torch.arange(self.irreps_in[i].mul * self.irreps_out[j].mul).view(
                                self.irreps_in[i].mul, self.irreps_out[j].mul
                            )
                            for j in outs
                        ],
                        dim=1,
                    )
                    for i in ins
                ],
                dim=0,
            )
            self.register_buffer(f"index_{k}", index, persistent=False)
            self.blocks.append((ins, outs, ir.dim, f"index_{k}", 1.0 / math.sqrt(fan_in)))

        scalar_outs = [
            j for j, (mul, ir) in enumerate(self.irreps_out) if ir.l == 0 and ir.p == 1 and mul > 0
        ]
        self.bias_terms = scalar_outs if biases else []
        n_bias = sum(self.irreps_out[j].mul for j in self.bias_terms)
        self.bias = nn.Parameter(torch.zeros(n_bias)) if biases else None
        self.dims_in = [mul * ir.dim for mul, ir in self.irreps_in]

        # the same map as one dense [dim_in, dim_out] matrix gathered from the flat weights
        # (entry n = weight_numel reads a zero): few, large ops, for the small batches of
        # molecules where per-op overhead, not arithmetic, dominates
        self.has_dense = self.irreps_in.dim * self.irreps_out.dim <= DENSE_MAX_ENTRIES
        dense = torch.full(
            (self.irreps_in.dim, self.irreps_out.dim) if self.has_dense else (0, 0),
            n,
            dtype=torch.int32,
        )
        scale = torch.zeros(n, dtype=torch.float64)
        offsets_in = [sum(self.dims_in[:i]) for i in range(len(self.dims_in))]
        offsets_out = [
            sum(m * ir.dim for m, ir in self.irreps_out[:j]) for j in range(len(self.irreps_out))
        ]
        for ins, outs, d, _index, alpha in self.blocks:
            for i in ins:
                for j in outs:
                    block = offsets[i, j] + torch.arange(
                        self.irreps_in[i].mul * self.irreps_out[j].mul
                    )
                    scale[block] = alpha
                    if not self.has_dense:
                        continue
                    block = block.view(self.irreps_in[i].mul, 1, self.irreps_out[j].mul, 1)
                    eye = torch.eye(d, dtype=torch.bool).view(1, d, 1, d)
                    rows = offsets_in[i] + torch.arange(self.irreps_in[i].mul * d)
                    cols = offsets_out[j] + torch.arange(self.irreps_out[j].mul * d)
                    dense[rows[:, None], cols[None, :]] = (
                        torch.where(eye, block, n).reshape(rows.shape[0], -1).int()
                    )
        self.register_buffer("dense_index", dense, persistent=False)
        self.register_buffer("dense_scale", scale, persistent=False)
        bias_index = torch.full((self.irreps_out.dim,), n_bias, dtype=torch.int64)
        k = 0
        for j in self.bias_terms:
            bias_index[offsets_out[j] : offsets_out[j] + self.irreps_out[j].mul] = torch.arange(
                k, k + self.irreps_out[j].mul
            )
            k += self.irreps_out[j].mul
        self.register_buffer("bias_index", bias_index, persistent=False)

    def dense_matrix(self, dtype: torch.dtype | None = None) -> Tensor:
        """The map as a matrix M with ``forward(x) = x @ M (+ bias)``.

        Shapes: → [irreps_in.dim, irreps_out.dim]
        """
        dtype = dtype or self.weight.dtype
        weight = self.weight.to(dtype) * self.dense_scale.to(dtype)
        flat = torch.cat([weight, weight.new_zeros(1)]).index_select(0, self.dense_index.view(-1))
        return flat.view(self.dense_index.shape)  # index_select: its backward is index_add_

    def _dense(self, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
        """Dense matrix and full-width bias, rebuilt on every call: a cache across calls could
        not see weights changed through ``.data`` (which leaves ``_version`` alone)."""
        matrix = self.dense_matrix(dtype)
        bias = None
        if self.bias is not None:
            full = torch.cat([self.bias.to(dtype), self.bias.new_zeros(1, dtype=dtype)])
            bias = full.index_select(0, self.bias_index)
        return matrix, bias

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        z = x.shape[0]
        if self.has_dense and z * self.dense_index.numel() <= DENSE_MAX_MACS:
            matrix, bias = self._dense(x.dtype)
            out = x @ matrix if bias is None else torch.addmm(bias, x, matrix)
            return out.view(*batch, self.irreps_out.dim)
        terms = x.split(self.dims_in, dim=-1)
        weight = self.weight.to(x.dtype)
        pieces: list[Tensor | None] = [None] * len(self.irreps_out)
        for ins, outs, d, index, alpha in self.blocks:
            w = weight[getattr(self, index)] * alpha  # [Σ mul_in, Σ mul_out]
            if len(ins) == 1:
                xi = terms[ins[0]].view(z, -1, d)
            else:
                xi = torch.cat([terms[i].view(z, -1, d) for i in ins], dim=1)  # [z, Σ mul_in, d]
            if d == 1:
                y = (xi.squeeze(-1) @ w).unsqueeze(-1)  # [z, Σ mul_out, 1]
            else:
                y = torch.matmul(xi.transpose(1, 2), w).transpose(1, 2)  # [z, Σ mul_out, d]
            for j, yj in zip(outs, y.split([self.irreps_out[j].mul for j in outs], dim=1)):
                pieces[j] = yj.reshape(z, -1)
        if self.bias is not None:
            for j, b in zip(
                self.bias_terms,
                self.bias.to(x.dtype).split([self.irreps_out[j].mul for j in self.bias_terms]),
            ):
                pieces[j] = pieces[j] + b if pieces[j] is not None else b.expand(z, -1)
        out = [
            p if p is not None else x.new_zeros(z, mul * ir.dim)
            for p, (mul, ir) in zip(pieces, self.irreps_out)
        ]
        return torch.cat(out, dim=-1).view(*batch, self.irreps_out.dim)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}, weight_numel={self.weight_numel}, biases={self.bias is not None}"
