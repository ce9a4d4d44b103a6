"""Gated nonlinearity: activations on scalars, and scalar gates multiplying higher irreps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from euclidnn.nn.mlp import normalize2mom
from euclidnn.o3.irreps import Irrep, Irreps

__all__ = ["Gate"]

Activation = Callable[[Tensor], Tensor]


def _parity_out(act: Activation, p_in: int) -> int:
    """Parity of act(x) for an input of parity p_in; 0 if act is neither even nor odd."""
    if p_in == 1:
        return 1
    x = torch.linspace(0.0, 10.0, 256, dtype=torch.float64)
    a1, a2 = act(x), act(-x)
    if torch.allclose(a1, a2):
        return 1
    if torch.allclose(a1, -a2):
        return p_in
    return 0


class Gate(nn.Module):
    r"""Gate nonlinearity (Weiler et al. 2018; e3nn's ``nn.Gate``, same semantics and constants).

    Input = scalars ⊕ gates ⊕ gated; output = φ(scalars) ⊕ (σ(gates) ⊙ gated):

        out_scalars = φ̃(x_s),   out_gated[u, m] = σ̃(g_u) · x_gated[u, m]

    One gate scalar per gated irrep (``irreps_gates.num_irreps == irreps_gated.num_irreps``).
    φ̃, σ̃ are the activations rescaled to preserve the second moment of N(0, 1) inputs
    (:func:`~euclidnn.nn.mlp.normalize2mom`, computed by quadrature; e3nn estimates the same
    constant by Monte-Carlo, so the two differ by ~1e-3 relative — the tests document it).
    Odd scalars (0o) need an even or odd activation; the output parity follows e3nn.

    Args:
        irreps_scalars: scalar irreps passed through ``act_scalars``.
        act_scalars: one activation per term of ``irreps_scalars``.
        irreps_gates: scalar irreps of the gates.
        act_gates: one activation per term of ``irreps_gates``.
        irreps_gated: the irreps multiplied by the gates.

    Shapes: x: [..., irreps_in.dim] → [..., irreps_out.dim]

    >>> gate = Gate("16x0e", [torch.nn.functional.silu], "8x0e", [torch.sigmoid], "4x1o + 4x2e")
    >>> str(gate.irreps_in), str(gate.irreps_out)
    ('16x0e+8x0e+4x1o+4x2e', '16x0e+4x1o+4x2e')
    >>> gate(torch.randn(3, gate.irreps_in.dim)).shape
    torch.Size([3, 48])
    """

    def __init__(
        self,
        irreps_scalars: Irreps | str,
        act_scalars: Sequence[Activation],
        irreps_gates: Irreps | str,
        act_gates: Sequence[Activation],
        irreps_gated: Irreps | str,
    ) -> None:
        super().__init__()
        self.irreps_scalars = Irreps(irreps_scalars)
        self.irreps_gates = Irreps(irreps_gates)
        self.irreps_gated = Irreps(irreps_gated)
        for name, irreps, acts in (
            ("scalars", self.irreps_scalars, act_scalars),
            ("gates", self.irreps_gates, act_gates),
        ):
            if any(ir.l != 0 for _, ir in irreps):
                raise ValueError(f"Gate: irreps_{name} must be scalars, got {irreps}")
            if len(acts) != len(irreps):
                raise ValueError(
                    f"Gate: {len(acts)} activations for the {len(irreps)} terms of irreps_{name} ({irreps})"
                )
        if self.irreps_gates.num_irreps != self.irreps_gated.num_irreps:
            raise ValueError(
                f"Gate: {self.irreps_gates.num_irreps} gates for {self.irreps_gated.num_irreps} gated irreps "
                f"({self.irreps_gates} vs {self.irreps_gated})"
            )
        self.act_scalars = [normalize2mom(a) for a in act_scalars]
        self.act_gates = [normalize2mom(a) for a in act_gates]
        scalars_out = Irreps(
            [
                (mul, Irrep(0, self._parity(a, ir.p)))
                for (mul, ir), a in zip(self.irreps_scalars, act_scalars)
            ]
        )
        gates_out = [self._parity(a, ir.p) for (_, ir), a in zip(self.irreps_gates, act_gates)]
        gate_parity = [p for (mul, _), p in zip(self.irreps_gates, gates_out) for _ in range(mul)]
        gated_out, k = [], 0
        for mul, ir in self.irreps_gated:  # the parity of a gated irrep is multiplied by its gate's
            for _ in range(mul):
                gated_out.append((1, Irrep(ir.l, ir.p * gate_parity[k])))
                k += 1
        self.irreps_in = self.irreps_scalars + self.irreps_gates + self.irreps_gated
        self.irreps_out = scalars_out + Irreps(gated_out).simplify()
        # gate index of every component of the gated block
        repeat = torch.tensor(
            [ir.dim for mul, ir in self.irreps_gated for _ in range(mul)], dtype=torch.long
        )
        self.register_buffer(
            "gate_index",
            torch.repeat_interleave(torch.arange(len(repeat)), repeat),
            persistent=False,
        )

    @staticmethod
    def _parity(act: Activation, p_in: int) -> int:
        p = _parity_out(act, p_in)
        if p == 0:
            raise ValueError("Gate: an odd scalar (0o) needs an even or odd activation")
        return p

    @staticmethod
    def _activate(acts: list[Activation], irreps: Irreps, x: Tensor) -> Tensor:
        if len(acts) == 1:
            return acts[0](x)
        parts = x.split([mul for mul, _ in irreps], dim=-1)
        return torch.cat([a(p) for a, p in zip(acts, parts)], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        scalars, gates, gated = x.split(
            [self.irreps_scalars.dim, self.irreps_gates.dim, self.irreps_gated.dim], dim=-1
        )
        pieces = []
        if self.irreps_scalars.dim > 0:
            pieces.append(self._activate(self.act_scalars, self.irreps_scalars, scalars))
        if self.irreps_gated.dim > 0:
            gates = self._activate(self.act_gates, self.irreps_gates, gates)
            pieces.append(gates.index_select(-1, self.gate_index) * gated)
        if not pieces:
            return x[..., :0]
        return torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}"
