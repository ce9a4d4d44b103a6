r"""Selection rules and projections: what a symmetry group allows a feature or tensor to be.

For a group G with elements R_g and an irreps representation D, the average

    P = (1/|G|) Σ_g D(R_g)

is the orthogonal projector onto the G-invariant subspace (D is orthogonal and P² = P), so
dim = tr P counts the independent components G allows (the character formula
(1/|G|) Σ_g χ(g) for the trivial irrep), and the eigenvectors of P with eigenvalue 1 are a
basis. Per-atom features also move with the atoms: y_π_g(i) = D(R_g) y_i for an equivariant
map, so their projection averages D(R_g)ᵀ y_π_g(i) over g.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from euclidnn.o3.cartesian import CartesianTensor
from euclidnn.o3.irreps import Irreps
from euclidnn.symmetry.groups import Symmetry

__all__ = [
    "PROPERTIES",
    "PropertyRule",
    "allowed_properties",
    "characters",
    "format_properties",
    "invariance_error",
    "invariant_basis",
    "project",
    "project_atoms",
    "project_cartesian",
    "projector",
    "representation",
]


def representation(irreps: Irreps | str, group: Symmetry, dtype=torch.float64) -> Tensor:
    """D(R_g) for every element of the group (parity from det R_g).

    Shapes: → [order, irreps.dim, irreps.dim]
    """
    operations = torch.as_tensor(group.operations, dtype=torch.float64)
    return Irreps(irreps).D_from_matrix(operations).to(dtype)


def projector(irreps: Irreps | str, group: Symmetry) -> Tensor:
    """P = (1/|G|) Σ_g D(R_g), the projector onto the invariant subspace (float64).

    Shapes: → [irreps.dim, irreps.dim]
    """
    return representation(irreps, group).mean(0)


def invariant_basis(irreps: Irreps | str, group: Symmetry) -> Tensor:
    """Orthonormal basis of the features the group leaves invariant (rows), each row within one
    term of ``irreps``.

    Shapes: → [n_invariant, irreps.dim] float64

    >>> from ase.build import molecule
    >>> from euclidnn.symmetry import point_group
    >>> water = point_group(molecule("H2O"))  # ase puts the C2 axis along z
    >>> invariant_basis("1o", water).abs().round(decimals=6)
    tensor([[0., 0., 1.]], dtype=torch.float64)
    >>> [invariant_basis(ir, point_group(molecule("CH4"))).shape[0] for ir in ("1o", "0e + 2e")]
    [0, 1]
    """
    irreps = Irreps(irreps)
    p = projector(irreps, group)
    rows = []
    for s in irreps.slices():  # P is block diagonal: one eigenproblem per term
        block = (p[s, s] + p[s, s].T) / 2
        values, vectors = torch.linalg.eigh(block)
        for v in vectors[:, values > 0.5].T.flip(0):
            rows.append(
                torch.zeros(irreps.dim, dtype=p.dtype).index_copy(
                    0, torch.arange(s.start, s.stop), v
                )
            )
    return torch.stack(rows) if rows else p.new_zeros(0, irreps.dim)


def project(features: Tensor, irreps: Irreps | str, group: Symmetry) -> Tensor:
    """The G-invariant part P y of per-structure features (the closest output the group allows).

    Shapes: features: [..., irreps.dim] → [..., irreps.dim]
    """
    features = torch.as_tensor(features)
    return features @ projector(irreps, group).to(features).T


def project_atoms(features: Tensor, irreps: Irreps | str, group: Symmetry) -> Tensor:
    r"""Per-atom features averaged over the group: ȳ_i = (1/|G|) Σ_g D(R_g)ᵀ y_π_g(i).

    ȳ is what an equivariant per-atom map can output on an input with symmetry G (an atom
    that an element fixes must carry a feature that element fixes).

    Shapes: features: [n_atoms, irreps.dim] → [n_atoms, irreps.dim]
    """
    features = torch.as_tensor(features)
    if features.shape[0] != group.permutations.shape[1]:
        raise ValueError(
            f"features: {features.shape[0]} rows, the group permutes {group.permutations.shape[1]} atoms"
        )
    D = representation(irreps, group, features.dtype).to(features.device)
    permuted = features[torch.as_tensor(group.permutations)]  # [order, n_atoms, dim]
    return torch.einsum("gba,gnb->na", D, permuted) / group.order


def project_cartesian(tensor: Tensor, formula: str, group: Symmetry) -> Tensor:
    """Cartesian tensor (indices of polar vectors, symmetries in ``formula``) made G-invariant.

    Shapes: tensor: [..., 3, …, 3] → [..., 3, …, 3]

    >>> from euclidnn.symmetry import point_group_operations, Symmetry
    >>> ops = point_group_operations("D4h")
    >>> d4h = Symmetry("D4h", ops, np.zeros((16, 0), int), np.zeros(3), np.zeros((16, 3)))
    >>> t = project_cartesian(torch.diag(torch.tensor([1.0, 2, 3], dtype=torch.float64)), "ij=ji", d4h)
    >>> t.diagonal().round(decimals=12).tolist(), bool(t.triu(1).abs().max() < 1e-12)
    ([1.5, 1.5, 3.0], True)
    """
    cartesian = CartesianTensor(formula)
    return cartesian.to_cartesian(project(cartesian.from_cartesian(tensor), cartesian, group))


def invariance_error(output: Tensor, irreps: Irreps | str, group: Symmetry) -> float:
    r"""Curie's principle, measured: max_g |D(R_g) y − y| for an output y of a symmetric input.

    An equivariant f satisfies f(g·x) = D(g) f(x); if g·x = x (the input has symmetry G) then
    y = f(x) is G-invariant, so this is 0 up to rounding (absolute, in the output's units;
    compare with |y|). A nonzero value is the part of y that the input's symmetry forbids.

    Shapes: output: [irreps.dim] or [1, irreps.dim]
    """
    y = torch.as_tensor(output).reshape(-1).to(torch.float64)
    D = representation(irreps, group)
    return float((D @ y - y).norm(dim=-1).max())


def characters(irreps: Irreps | str, group: Symmetry, basis: Tensor | None = None) -> Tensor:
    """χ(g) = tr(B D(R_g) Bᵀ) of the representation on the span of ``basis`` (rows,
    orthonormal, an invariant subspace; default the whole space).

    Shapes: basis: [k, irreps.dim] → [order]
    """
    D = representation(irreps, group)
    if basis is None:
        return D.diagonal(dim1=-2, dim2=-1).sum(-1)
    basis = torch.as_tensor(basis, dtype=torch.float64)
    return torch.einsum("ka,gab,kb->g", basis, D, basis)


@dataclass(frozen=True)
class PropertyRule:
    """How many independent components a group allows a tensor property.

    Attributes:
        name: the property, e.g. ``"dipole"``.
        irreps: its irreps (string).
        formula: Cartesian index symmetries (``"ij=ji"``), or ``None`` if given by irreps only.
        dimension: number of components.
        allowed: number of G-invariant components (0: the group forbids the property).
    """

    name: str
    irreps: str
    formula: str | None
    dimension: int
    allowed: int


#: (name, irreps, Cartesian formula or None) of the tabulated properties.
PROPERTIES = (
    ("energy, charge (scalar)", "0e", None),
    ("optical rotation, chirality (pseudoscalar)", "0o", None),
    ("dipole (polar vector)", "1o", "i"),
    ("magnetic moment (axial vector)", "1e", None),
    ("polarizability (symmetric rank 2)", "0e + 2e", "ij=ji"),
    ("quadrupole (traceless symmetric)", "2e", None),
    ("gyration / optical activity tensor", "0o + 2o", None),
    ("octupole", "3o", None),
    ("hyperpolarizability beta, piezoelectric d", "2x1o + 2o + 3o", "ijk=ikj"),
    ("elastic stiffness", "2x0e + 2x2e + 4e", "ijkl=jikl=klij"),
)


def allowed_properties(group: Symmetry) -> list[PropertyRule]:
    """Which tensor properties the group allows, and with how many independent components.

    >>> from ase.build import molecule
    >>> from euclidnn.symmetry import point_group
    >>> rules = {r.name.split(" (")[0]: r.allowed for r in allowed_properties(point_group(molecule("C6H6")))}
    >>> rules["dipole"], rules["polarizability"]
    (0, 2)
    """
    # one D(R_g) for every distinct irrep of the table: dim of the invariants = tr of its mean
    distinct = sorted({ir for _, irreps, _ in PROPERTIES for _, ir in Irreps(irreps)})
    p = projector(Irreps([(1, ir) for ir in distinct]), group)
    offsets = np.cumsum([0] + [ir.dim for ir in distinct])
    count = {
        ir: round(float(p[a:b, a:b].trace())) for ir, a, b in zip(distinct, offsets, offsets[1:])
    }
    rules = []
    for name, irreps, formula in PROPERTIES:
        irreps = Irreps(irreps)
        allowed = sum(mul * count[ir] for mul, ir in irreps)
        rules.append(PropertyRule(name, str(irreps), formula, irreps.dim, allowed))
    return rules


def format_properties(rules: list[PropertyRule]) -> str:
    """A plain-text table of :func:`allowed_properties`."""
    width = max(len(r.name) for r in rules)
    lines = [f"{'property':<{width}}  {'irreps':<16} allowed / components"]
    for r in rules:
        verdict = "forbidden" if r.allowed == 0 else f"{r.allowed} / {r.dimension}"
        lines.append(f"{r.name:<{width}}  {r.irreps:<16} {verdict}")
    return "\n".join(lines)
