r"""Symmetry breaking: what no equivariant model can fit, and what an order parameter leaves.

Curie's principle for per-atom outputs: if the input has the symmetry G (element g moves atom
i onto π_g(i)), an equivariant map f satisfies f(x)_π_g(i) = D(R_g) f(x)_i. The outputs it
can produce are therefore the fixed points of the averaging

    (A y)_i = (1/|G|) Σ_g D(R_g)ᵀ y_π_g(i),

an orthogonal projection. For a target y the best any equivariant model can do is A y; the
*forbidden* part y − A y is the symmetry-breaking content of the data and

    floor = mean over atoms and components of (y − A y)²

is a lower bound on the mean squared error of every equivariant model (the loss floor). To
fit y anyway, the input needs an *order parameter*: extra features that break G down to the
target's symmetry (see :func:`~euclidnn.symmetry.learn_order_parameter`). The elements of G
that leave an order parameter invariant form the subgroup it leaves (:func:`stabilizer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from euclidnn.o3.irreps import Irreps
from euclidnn.symmetry.groups import Symmetry, schoenflies_name
from euclidnn.symmetry.project import project, project_atoms, representation

__all__ = ["LossFloor", "loss_floor", "norms_per_irrep", "stabilizer"]


@dataclass(frozen=True, eq=False)
class LossFloor:
    """The part of a target an equivariant model can fit on an input of symmetry G, and the rest.

    Attributes:
        allowed: A y, the closest output any equivariant model can give.
        forbidden: y − A y, what the input's symmetry forbids.
        floor: mean of forbidden², the lowest mean squared error an equivariant model reaches.
        forbidden_per_irrep: ``(irrep, norm of the forbidden part in that irreps term)``.

    Shapes: allowed, forbidden: like the target ([n_atoms, dim] or [dim])
    """

    allowed: Tensor
    forbidden: Tensor
    floor: float
    forbidden_per_irrep: tuple[tuple[str, float], ...]


def norms_per_irrep(features: Tensor, irreps: Irreps | str) -> tuple[tuple[str, float], ...]:
    """Norm of the features in each term of ``irreps`` (over all rows).

    >>> norms_per_irrep(torch.tensor([3.0, 0.0, 4.0, 0.0]), "0e + 1o")
    (('1x0e', 3.0), ('1x1o', 4.0))
    """
    irreps = Irreps(irreps)
    features = torch.as_tensor(features)
    return tuple(
        (f"{mul}x{ir}", float(features[..., s].norm()))
        for (mul, ir), s in zip(irreps, irreps.slices())
    )


def loss_floor(target: Tensor, irreps: Irreps | str, group: Symmetry) -> LossFloor:
    """Split a target into what an equivariant model can fit on an input of symmetry G and the rest.

    Args:
        target: per-atom targets [n_atoms, irreps.dim] (atoms permuted by the group), or one
            per-structure target [irreps.dim].
        irreps: irreps of the target (``"1o"`` for displacements or forces).
        group: the input's symmetry.

    >>> from ase import Atoms
    >>> from euclidnn.symmetry import point_group
    >>> square = Atoms("C4", [[1, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]])
    >>> rectangle = square.positions * [1.2, 0.8, 1.0]
    >>> floor = loss_floor(torch.tensor(rectangle - square.positions), "1o", point_group(square))
    >>> round(floor.floor, 6), tuple((k, round(v, 6)) for k, v in floor.forbidden_per_irrep)
    (0.026667, (('1x1o', 0.565685),))
    """
    target = torch.as_tensor(target, dtype=torch.float64)
    allowed = (
        project_atoms(target, irreps, group) if target.ndim == 2 else project(target, irreps, group)
    )
    forbidden = target - allowed
    return LossFloor(
        allowed, forbidden, float(forbidden.pow(2).mean()), norms_per_irrep(forbidden, irreps)
    )


def stabilizer(
    features: Tensor,
    irreps: Irreps | str,
    group: Symmetry,
    sites: np.ndarray | None = None,
    tolerance: float = 1e-3,
) -> Symmetry:
    """The subgroup of G that leaves per-site features invariant: the symmetry they leave.

    Element g is kept if D(R_g) o_s(i) = o_s(π_g(i)) for every atom i (s(i) = ``sites[i]``, the
    row of ``features`` atom i reads, −1 for none) within ``tolerance`` times the largest
    feature norm. With one row shared by all atoms (``sites`` None), g is kept if D(R_g) o = o.

    Shapes: features: [n_rows, irreps.dim], sites: [n_atoms]

    >>> from euclidnn.symmetry import point_group_operations
    >>> ops = point_group_operations("D4h")
    >>> d4h = Symmetry("D4h", ops, np.zeros((16, 0), int), np.zeros(3), np.zeros((16, 3)))
    >>> x2_minus_y2 = torch.tensor([[0.0, 0, 0, 0, 1.0]])  # the l = 2 component ~ x² − y²
    >>> stabilizer(x2_minus_y2, "2e", d4h).name
    'D2h'
    """
    features = torch.as_tensor(features, dtype=torch.float64)
    D = representation(irreps, group)  # [order, dim, dim]
    scale = float(features.norm(dim=-1).max()) or 1.0
    if sites is None:
        moved = torch.einsum("gab,rb->gra", D, features)
        error = (moved - features[None]).norm(dim=-1).amax(-1)
    else:
        sites = torch.as_tensor(np.asarray(sites), dtype=torch.int64)
        padded = torch.cat([features, features.new_zeros(1, features.shape[1])])  # row −1: zeros
        per_atom = padded[sites]  # [n_atoms, dim]
        moved = torch.einsum("gab,nb->gna", D, per_atom)
        error = (moved - per_atom[torch.as_tensor(group.permutations)]).norm(dim=-1).amax(-1)
    keep = (error <= tolerance * scale).numpy()
    operations = group.operations[keep]
    name = schoenflies_name(operations) if not group.is_space_group else f"subgroup of {group.name}"
    return Symmetry(
        name,
        operations,
        group.permutations[keep],
        group.center,
        group.translations[keep],
        None,
        group.tolerance,
    )
