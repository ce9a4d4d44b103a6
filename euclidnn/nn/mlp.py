"""A multilayer perceptron on invariant (scalar) inputs, e.g. the radial network R(r)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["ScalarMLP", "normalize2mom"]


def normalize2mom(act: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Rescale an activation so that it preserves the second moment of a standard normal input.

    φ̃(x) = φ(x) / sqrt(E[φ(z)²]), z ~ N(0, 1)  (e3nn's ``normalize2mom``; the constant is
    computed by Gauss–Hermite quadrature, deterministic).

    >>> f = normalize2mom(torch.nn.functional.silu)
    >>> round(float((f(torch.randn(1_000_000, generator=torch.Generator().manual_seed(0))) ** 2).mean()), 2)
    1.0
    """
    nodes, weights = _hermite()
    second_moment = float((weights * act(nodes) ** 2).sum())
    cst = 1.0 / math.sqrt(second_moment)
    if abs(cst - 1.0) < 1e-4:
        return act

    def normalized(x: Tensor) -> Tensor:
        return act(x) * cst

    normalized.cst = cst  # type: ignore[attr-defined]
    normalized.__wrapped__ = act  # type: ignore[attr-defined]
    return normalized


def _hermite(n: int = 100) -> tuple[Tensor, Tensor]:
    import numpy as np

    x, w = np.polynomial.hermite_e.hermegauss(n)  # weight exp(−x²/2)
    w = w / w.sum()
    return torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64)


class ScalarMLP(nn.Module):
    """Fully connected network on scalars with variance-preserving ("e3nn-style") initialisation.

    h_{k+1} = φ̃(h_k W_k / sqrt(n_k)),  W_k ~ N(0, 1),  last layer linear.

    Weights are standard normal and the 1/sqrt(fan_in) factor is applied in the forward pass,
    and φ̃ is the activation rescaled by :func:`normalize2mom`, so unit-variance inputs give
    unit-variance outputs at initialisation, independently of the widths. No biases (as
    e3nn's FullyConnectedNet, so that R(r) is zero wherever the basis is).

    Args:
        dims: layer widths ``[n_in, hidden..., n_out]``.
        act: activation of the hidden layers (rescaled by :func:`normalize2mom`).

    Shapes: x: [..., dims[0]] → [..., dims[-1]]

    >>> mlp = ScalarMLP([8, 64, 64, 96])
    >>> mlp(torch.randn(5, 8)).shape
    torch.Size([5, 96])
    """

    def __init__(
        self, dims: Sequence[int], act: Callable[[Tensor], Tensor] = nn.functional.silu
    ) -> None:
        super().__init__()
        if len(dims) < 2:
            raise ValueError(f"ScalarMLP needs at least an input and an output width, got {dims}")
        self.dims = tuple(int(d) for d in dims)
        self.act = normalize2mom(act)
        self.weights = nn.ParameterList(
            [
                nn.Parameter(torch.randn(n_in, n_out))
                for n_in, n_out in zip(self.dims, self.dims[1:])
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x, self.matrices())

    def matrices(
        self, *, input_rows: Tensor | None = None, output_cols: Tensor | None = None
    ) -> list[Tensor]:
        """The weight matrices with their 1/sqrt(fan_in) (and activation) factors folded in:
        ``forward(x) == run(x, matrices())``. A caller that evaluates the MLP many times on
        unchanged weights, or on permuted inputs, makes them once.

        Args:
            input_rows: x's column c is the MLP's input ``input_rows[c]`` (default: identity).
            output_cols: compute only these outputs, in this order (repeats allowed).

        Shapes: → [[dims[0] or len(input_rows), dims[1]], …, [dims[-2], dims[-1] or len(output_cols)]]
        """
        last, out = len(self.weights) - 1, []
        for k, (w, scale) in enumerate(zip(self.weights, self.matrix_scales())):
            w = w * scale
            if k == 0 and input_rows is not None:
                w = w.index_select(0, input_rows)
            if k == last and output_cols is not None:
                w = w.index_select(1, output_cols)
            out.append(w)
        return out

    def matrix_scales(self) -> list[float]:
        """The factor of each weight in :meth:`matrices`: 1/sqrt(fan_in), times the activation's
        normalization constant for every layer after the first (φ̃ = φ · cst is folded into the
        next layer's factor)."""
        cst = getattr(self.act, "cst", 1.0)
        return [
            (1.0 if k == 0 else cst) / math.sqrt(w.shape[0]) for k, w in enumerate(self.weights)
        ]

    def run(self, x: Tensor, matrices: list[Tensor]) -> Tensor:
        """The MLP with these :meth:`matrices`: x @ m₀, then φ and @ m_k for each next one.

        Shapes: x: [..., matrices[0].shape[0]] → [..., matrices[-1].shape[1]]
        """
        act = self.act if getattr(self.act, "cst", 1.0) == 1.0 else self.act.__wrapped__
        for k, m in enumerate(matrices):
            if k > 0:
                x = act(x)
            x = x @ m.to(x.dtype)
        return x

    def extra_repr(self) -> str:
        return f"dims={list(self.dims)}"
