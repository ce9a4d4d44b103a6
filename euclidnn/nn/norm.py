"""Norm-based activation and equivariant layer normalisation (functions of invariant norms only)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from euclidnn.o3.irreps import Irreps

__all__ = ["EquivariantLayerNorm", "NormActivation"]


def _term_index(irreps: Irreps) -> Tensor:
    """Index of the (term, channel) of every component: [irreps.dim] → which irrep it belongs to."""
    sizes = [ir.dim for mul, ir in irreps for _ in range(mul)]
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))


class NormActivation(nn.Module):
    r"""Scale every irrep by a function of its norm: x_u ↦ x_u · φ(‖x_u‖) / ‖x_u‖.

    ‖x_u‖ = sqrt(Σ_m x_u,m² + ε²) is invariant under O(3), so the map is equivariant for every
    irrep (a 0e/0o scalar becomes sign(x) φ(|x|)). With φ = sigmoid the direction is kept and
    the length squashed (e3nn's ``NormActivation``, ``normalize=True``; ε regularises x = 0).

    Args:
        irreps_in: irreps of the input (and output).
        act: φ, applied to the norms.
        epsilon: ε, makes the map smooth at x = 0.

    Shapes: x: [..., irreps_in.dim] → [..., irreps_in.dim]

    >>> act = NormActivation("2x0e + 1x1o", torch.sigmoid)
    >>> act(torch.tensor([0.0, 1.0, 3.0, 4.0, 0.0])).round(decimals=4)
    tensor([0.0000, 0.7311, 0.5960, 0.7946, 0.0000])
    """

    def __init__(
        self,
        irreps_in: Irreps | str,
        act: Callable[[Tensor], Tensor] = torch.sigmoid,
        epsilon: float = 1e-8,
    ) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps_in)
        self.irreps_out = self.irreps_in
        self.act = act
        self.epsilon = float(epsilon)
        self.register_buffer("index", _term_index(self.irreps_in), persistent=False)
        self.num_irreps = sum(mul for mul, _ in self.irreps_in)

    def forward(self, x: Tensor) -> Tensor:
        square = x.new_zeros(*x.shape[:-1], self.num_irreps).index_add_(-1, self.index, x * x)
        norm = torch.sqrt(square + self.epsilon**2)
        return x * (self.act(norm) / norm)[..., self.index]


class EquivariantLayerNorm(nn.Module):
    r"""Layer normalisation per irrep type that commutes with O(3).

    For each term ``mul x ir`` of one sample: scalars (l = 0) are centred over the channels,
    then every term is divided by its root mean square over channels and components,

        x_u ← γ_u x_u / sqrt(mean_{u, m} x_{u,m}² + ε)  (+ β_u for 0e terms)

    Only invariants (means of squares) and 0e shifts are used, so the layer is equivariant; γ
    starts at 1 and β at 0, so at initialisation every term has unit second moment.

    Args:
        irreps_in: irreps of the input (and output).
        affine: learn γ (every term) and β (0e terms).
        epsilon: ε added to the mean square.

    Shapes: x: [..., irreps_in.dim] → [..., irreps_in.dim]

    >>> norm = EquivariantLayerNorm("4x0e + 2x1o")
    >>> y = norm(torch.randn(3, 10))
    >>> bool(torch.allclose(y[:, 4:].pow(2).mean(-1), torch.ones(3), atol=1e-3))
    True
    """

    def __init__(self, irreps_in: Irreps | str, affine: bool = True, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps_in)
        self.irreps_out = self.irreps_in
        self.epsilon = float(epsilon)
        self.affine = affine
        n_scale = sum(mul for mul, _ in self.irreps_in)
        n_shift = sum(mul for mul, ir in self.irreps_in if ir.l == 0 and ir.p == 1)
        self.weight = nn.Parameter(torch.ones(n_scale)) if affine else None
        self.bias = nn.Parameter(torch.zeros(n_shift)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        pieces = []
        i_scale = i_shift = 0
        for (mul, ir), term in zip(
            self.irreps_in, x.split([m * i.dim for m, i in self.irreps_in], dim=-1)
        ):
            t = term.unflatten(-1, (mul, ir.dim))  # [..., u, m]
            if ir.l == 0:
                t = t - t.mean(dim=-2, keepdim=True)
            t = t * torch.rsqrt(t.pow(2).mean(dim=(-2, -1), keepdim=True) + self.epsilon)
            if self.weight is not None:
                t = t * self.weight[i_scale : i_scale + mul].to(x.dtype)[:, None]
                if ir.l == 0 and ir.p == 1:
                    t = t + self.bias[i_shift : i_shift + mul].to(x.dtype)[:, None]
                    i_shift += mul
            i_scale += mul
            pieces.append(t.flatten(-2))
        return torch.cat(pieces, dim=-1)
