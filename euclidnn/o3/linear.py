"""Equivariant linear map: mixes the multiplicities of each irrep, never the m components."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from euclidnn.o3.irreps import Irreps

__all__ = ["Linear"]


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

        # one block per distinct irrep: rows = its input channels, columns = its output channels
        blocks = []  # (in terms, out terms, d, flat-weight index [Σ mul_in, Σ mul_out], α)
        for ir in sorted({ir for _, ir in self.irreps_out}):
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
            blocks.append((ins, outs, ir.dim, index, 1.0 / math.sqrt(fan_in)))

        scalar_outs = [
            j for j, (mul, ir) in enumerate(self.irreps_out) if ir.l == 0 and ir.p == 1 and mul > 0
        ]
        self.bias_terms = scalar_outs if biases else []
        n_bias = sum(self.irreps_out[j].mul for j in self.bias_terms)
        self.bias = nn.Parameter(torch.zeros(n_bias)) if biases else None

        # The forward pass works in a "grouped" column layout: block after block, each
        # component-major ([d, Σ mul_in] columns), so that a block is one matrix product
        # [rows·d, Σ mul_in] × [Σ mul_in, Σ mul_out] with no zeros. Two column permutations lead
        # into and out of it (none where the layout already agrees, e.g. all scalars).
        offsets_in = [
            sum(m * ir.dim for m, ir in self.irreps_in[:i]) for i in range(len(self.irreps_in))
        ]
        offsets_out = [
            sum(m * ir.dim for m, ir in self.irreps_out[:j]) for j in range(len(self.irreps_out))
        ]
        perm_in: list[int] = []
        perm_out = torch.full((self.irreps_out.dim,), -1, dtype=torch.int64)
        self.plan = []  # (d, Σ mul_in, Σ mul_out, weight slice or index buffer, has bias)
        scale = torch.zeros(n, dtype=torch.float64)  # α = 1/√fan_in of each weight
        column_out = 0
        for k, (ins, outs, d, index, alpha) in enumerate(blocks):
            mul_in, mul_out = index.shape
            scale[index.flatten()] = alpha
            for c in range(d):
                for i in ins:
                    perm_in += [offsets_in[i] + u * d + c for u in range(self.irreps_in[i].mul)]
            v = column_out
            for j in outs:
                mul = self.irreps_out[j].mul
                cols = offsets_out[j] + torch.arange(mul * d).view(mul, d)  # e3nn: u·d + c
                perm_out[cols] = v + torch.arange(mul)[:, None] + mul_out * torch.arange(d)
                v += mul
            column_out += d * mul_out
            start = int(index[0, 0])
            if torch.equal(index.flatten(), torch.arange(start, start + index.numel())):
                weights = (start, start + index.numel())  # a contiguous slice: no gather
            else:
                weights = f"index_{k}"
                self.register_buffer(weights, index.flatten(), persistent=False)
            has_bias = outs[0] in self.bias_terms  # the 0e block: all its outputs have biases
            self.plan.append((d, mul_in, mul_out, weights, has_bias))
        # biases on 0e outputs that no input reaches (no block): added to the output
        self.bias_alone = bool(self.bias_terms) and not any(b[-1] for b in self.plan)
        offsets = [sum(m * ir.dim for m, ir in self.irreps_out[:j]) for j in self.bias_terms]
        bias_index = torch.full((self.irreps_out.dim,), n_bias, dtype=torch.int64)
        k = 0
        for j, o in zip(self.bias_terms, offsets):
            bias_index[o : o + self.irreps_out[j].mul] = torch.arange(k, k + self.irreps_out[j].mul)
            k += self.irreps_out[j].mul
        self.register_buffer(
            "bias_index", bias_index if self.bias_alone else None, persistent=False
        )
        zero_fill = bool((perm_out < 0).any())  # output terms no input reaches …
        perm_out[perm_out < 0] = column_out  # … read an appended zero column
        self.zero_fill = zero_fill
        # kept in float64 outside the buffers (a float32 model moved to float64 keeps α exact)
        self._scale = {(torch.float64, torch.device("cpu")): scale}
        self.widths = [d * mul_in for d, mul_in, *_ in self.plan]  # of the input blocks
        perm_in = torch.tensor(perm_in, dtype=torch.int64)
        identity = lambda p, n: p.shape[0] == n and torch.equal(p, torch.arange(n))  # noqa: E731
        self.register_buffer(
            "perm_in", None if identity(perm_in, self.irreps_in.dim) else perm_in, persistent=False
        )
        self.register_buffer(
            "perm_out", None if identity(perm_out, column_out + zero_fill) else perm_out,
            persistent=False,
        )  # fmt: skip

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
