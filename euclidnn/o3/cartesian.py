r"""Cartesian tensors with index symmetries ↔ irreps, and reduced tensor products.

A formula such as ``"ijk=jik=ikj"`` names the indices and the signed permutations
that leave the tensor unchanged (``"ij=-ji"``: antisymmetric). They generate a finite group
G of signed permutations; the tensors obeying the formula are the image of the projector

.. math::

    \Pi\, T = \frac{1}{|G|} \sum_{(s, \sigma) \in G} s\, T \circ \sigma .

The tensor space :math:`V_1 \otimes \dots \otimes V_n` (each :math:`V_a` given by its
Irreps) is decomposed by coupling the indices left to right with Wigner 3j symbols; the
coupled blocks :math:`\sqrt{2L+1}\, C^{l_{12}\dots}` are orthonormal, and for every output
irrep the blocks are projected with Π and orthonormalised (Gram–Schmidt in coupling order,
so the basis is deterministic). The rows of the resulting change of basis
``Q [irreps_out.dim, d_1, …, d_n]`` are orthonormal and span exactly the image of Π.

For rank 2 tensors of vectors the basis is :math:`Q^L_{m,ij} = \sqrt{2L+1}\,C^{11L}_{ijm}`,
the same as e3nn 0.6's ``CartesianTensor``.
"""

from __future__ import annotations

import math

import torch

from .irreps import Irrep, Irreps
from .wigner import wigner_3j

__all__ = ["CartesianTensor", "ReducedTensorProducts"]


def _parse_formula(formula: str) -> tuple[str, list[tuple[int, tuple[int, ...]]]]:
    tokens = formula.replace(" ", "").split("=")
    indices = tokens[0]
    if not indices.isalpha() or len(set(indices)) != len(indices):
        raise ValueError(
            f"bad index token {tokens[0]!r} in formula {formula!r}: expected distinct letters, e.g. 'ij'"
        )
    relations = []
    for token in tokens[1:]:
        sign = -1 if token.startswith("-") else 1
        letters = token.lstrip("-")
        if sorted(letters) != sorted(indices):
            raise ValueError(
                f"bad token {token!r} in formula {formula!r}: must permute {indices!r}"
            )
        relations.append((sign, tuple(letters.index(c) for c in indices)))
    return indices, relations


def _group(n: int, relations) -> list[tuple[int, tuple[int, ...]]]:
    """Closure of the signed permutations; element (s, p) acts as s · T.permute(p)."""
    identity = (1, tuple(range(n)))
    elements = {identity}
    frontier = [identity]
    while frontier:
        new = []
        for s1, p in frontier:
            for s2, q in relations:
                element = (s1 * s2, tuple(q[p[d]] for d in range(n)))
                if element not in elements:
                    elements.add(element)
                    new.append(element)
        frontier = new
    return sorted(elements)


def _coupled_blocks(irreps_list: list[Irreps], dtype) -> list[tuple[Irrep, torch.Tensor]]:
    """Orthonormal blocks [2L+1, d_1, …, d_n] coupling the indices left to right."""

    def copies(irreps: Irreps):
        offset = 0
        for mul, ir in irreps:
            for _ in range(mul):
                E = torch.zeros(ir.dim, irreps.dim, dtype=dtype)
                E[:, offset : offset + ir.dim] = torch.eye(ir.dim, dtype=dtype)
                yield ir, E
                offset += ir.dim

    blocks = list(copies(irreps_list[0]))
    for irreps in irreps_list[1:]:
        coupled = []
        for ir1, B in blocks:
            for ir2, E in copies(irreps):
                for ir in ir1 * ir2:
                    C = wigner_3j(ir1.l, ir2.l, ir.l, dtype=dtype)
                    block = math.sqrt(ir.dim) * torch.einsum("a...,bz,abM->M...z", B, E, C)
                    coupled.append((ir, block))
        blocks = coupled
    return blocks


class ReducedTensorProducts(torch.nn.Module):
    r"""Irreps of the tensor product :math:`x_1 \otimes \dots \otimes x_n` restricted by an
    index-symmetry formula (e3nn's ``ReducedTensorProducts``), e.g. the symmetric square.

    .. math::

        \text{out}_k = \sum Q_{k, i_1 \dots i_n}\, x_{1, i_1} \cdots x_{n, i_n}

    Args:
        formula: index symmetries, e.g. ``"ij=ji"``.
        filter_ir_out: keep only these output irreps (optional).
        **irreps: the Irreps of each index, e.g. ``i="1o"``; indices related by the formula
            must have the same Irreps, and an index not given inherits from one related to it.

    Attributes:
        irreps_in: tuple of Irreps, one per index; irreps_out: Irreps (sorted, simplified).
        change_of_basis: Q [irreps_out.dim, d_1, …, d_n], orthonormal rows.

    Shapes:
        forward: x_a [..., d_a] each → [..., irreps_out.dim]

    >>> rtp = ReducedTensorProducts("ij=ji", i="1o + 1e")
    >>> rtp.irreps_out
    1x0o+2x0e+1x1o+1x2o+2x2e
    >>> rtp(torch.randn(4, 6), torch.randn(4, 6)).shape
    torch.Size([4, 21])
    """

    def __init__(self, formula: str, filter_ir_out=None, **irreps):
        super().__init__()
        indices, relations = _parse_formula(formula)
        group = _group(len(indices), relations)
        for _, p in group:  # related indices share their irreps
            for d, src in enumerate(p):
                a, b = indices[d], indices[src]
                if a in irreps and b not in irreps:
                    irreps[b] = irreps[a]
        unknown = set(irreps) - set(indices)
        if unknown:
            raise ValueError(
                f"irreps given for indices {sorted(unknown)} not in formula {formula!r}"
            )
        missing = [i for i in indices if i not in irreps]
        if missing:
            raise ValueError(f"no irreps for index {missing[0]!r} of formula {formula!r}")
        irreps_in = tuple(Irreps(irreps[i]) for i in indices)
        for _, p in group:
            for d, src in enumerate(p):
                if irreps_in[d] != irreps_in[src]:
                    raise ValueError(
                        f"indices {indices[d]!r} and {indices[src]!r} are related by {formula!r} but have different irreps"
                    )
        keep = None if filter_ir_out is None else {Irrep(ir) for ir in filter_ir_out}

        def project(B: torch.Tensor) -> torch.Tensor:
            return sum(s * B.permute(0, *[1 + d for d in p]) for s, p in group) / len(group)

        accepted: dict[Irrep, list[torch.Tensor]] = {}
        for ir, B in _coupled_blocks(list(irreps_in), torch.float64):
            if keep is not None and ir not in keep:
                continue
            v = project(B)
            for Q in accepted.get(ir, []):
                v = v - (v * Q).sum() / ir.dim * Q
            norm2 = (v * v).sum() / ir.dim
            if norm2 > 1e-10:
                accepted.setdefault(ir, []).append(v / norm2.sqrt())
        order = sorted(accepted)
        self.formula = formula
        self.indices = indices
        self.irreps_in = irreps_in
        self.irreps_out = Irreps([(len(accepted[ir]), ir) for ir in order])
        shape = tuple(ir.dim for ir in irreps_in)
        blocks = [Q for ir in order for Q in accepted[ir]]
        Q = torch.cat(blocks, dim=0) if blocks else torch.zeros((0,) + shape, dtype=torch.float64)
        self.change_of_basis_float64 = Q  # exact copy, kept out of the module's dtype casts
        # float64 buffer (cast to the input's dtype in forward), so .double() loses nothing
        self.register_buffer("change_of_basis", Q.clone())

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if len(xs) != len(self.irreps_in):
            raise ValueError(f"expected {len(self.irreps_in)} inputs, got {len(xs)}")
        out = xs[0]
        for x in xs[1:]:
            out = (out[..., :, None] * x[..., None, :]).flatten(-2)
        return out @ self.change_of_basis.to(out.dtype).flatten(1).T


class CartesianTensor(Irreps):
    r"""The irreps of a Cartesian tensor of vectors with index symmetries (e3nn 0.6's API).

    ``CartesianTensor("ij=ji")`` is the Irreps ``1x0e+1x2e`` and converts between a symmetric
    3×3 tensor and its irreps: :math:`y = Q \cdot T`, :math:`T = Q^T y` (Q from
    :class:`ReducedTensorProducts` with every index ``1o``; ``to_cartesian(from_cartesian(T))``
    is the projection of T onto the allowed symmetry).

    Shapes:
        from_cartesian: [..., 3, …, 3] → [..., dim];  to_cartesian: [..., dim] → [..., 3, …, 3]

    >>> CartesianTensor("ij=ji"), CartesianTensor("ij=-ji"), CartesianTensor("ijk=jik=ikj")
    (1x0e+1x2e, 1x1e, 1x1o+1x3o)
    >>> t = CartesianTensor("ij")
    >>> t.from_cartesian(torch.eye(3, dtype=torch.float64))[:1]
    tensor([1.7321], dtype=torch.float64)
    """

    def __new__(cls, formula: str):
        indices, _ = _parse_formula(formula)
        rtp = ReducedTensorProducts(formula, **{i: "1o" for i in indices})
        self = super().__new__(cls, rtp.irreps_out)
        self.formula = formula
        self.indices = indices
        self._change_of_basis = rtp.change_of_basis_float64
        return self

    def change_of_basis(self, dtype=torch.float64, device=None) -> torch.Tensor:
        """Q [dim, 3, …, 3] with orthonormal rows."""
        return self._change_of_basis.to(dtype=dtype, device=device)

    def from_cartesian(self, data: torch.Tensor) -> torch.Tensor:
        """Irreps components of a Cartesian tensor: :math:`y_k = Q_{k,ij…} T_{ij…}`."""
        n = len(self.indices)
        Q = self.change_of_basis(data.dtype, data.device).flatten(1)
        return data.flatten(-n) @ Q.T

    def to_cartesian(self, data: torch.Tensor) -> torch.Tensor:
        """Cartesian tensor of irreps components: :math:`T_{ij…} = Q_{k,ij…} y_k`."""
        n = len(self.indices)
        Q = self.change_of_basis(data.dtype, data.device)
        return (data @ Q.flatten(1)).unflatten(-1, (3,) * n)

    def from_vectors(self, *xs: torch.Tensor) -> torch.Tensor:
        r"""Irreps of :math:`x_1 \otimes x_2 \otimes \dots` (each [..., 3])."""
        out = xs[0]
        for x in xs[1:]:
            out = (out[..., :, None] * x[..., None, :]).flatten(-2)
        return out @ self.change_of_basis(out.dtype, out.device).flatten(1).T

    def __reduce__(self):
        return (CartesianTensor, (self.formula,))
