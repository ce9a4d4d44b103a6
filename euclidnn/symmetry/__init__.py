"""Symmetry as an instrument: point and space groups, selection rules, symmetrization,
Curie's principle and the symmetry-breaking order parameter.

Flow: structure → :func:`point_group` / :func:`space_group` → :class:`Symmetry` (elements
R_g and atom permutations) → :func:`invariant_basis` / :func:`allowed_properties` (which
outputs the group allows), :func:`symmetrize`, :func:`project`, :func:`invariance_error`.
"""

from .breaking import LossFloor, loss_floor, norms_per_irrep, stabilizer
from .detect import DEFAULT_TOLERANCE, point_group
from .groups import (
    Symmetry,
    describe_operation,
    generate_group,
    point_group_operations,
    reflection_matrix,
    rotation_matrix,
    schoenflies_name,
)
from .order_parameter import (
    BreakingModel,
    OrderParameterConfig,
    OrderParameterResult,
    learn_order_parameter,
)
from .project import (
    PROPERTIES,
    PropertyRule,
    allowed_properties,
    characters,
    format_properties,
    invariance_error,
    invariant_basis,
    project,
    project_atoms,
    project_cartesian,
    projector,
    representation,
)
from .signals import bispectrum, power_spectrum, sphere_signal, spherical_projection
from .space import DEFAULT_SYMPREC, space_group
from .symmetrize import Symmetrized, symmetrize

__all__ = [
    "BreakingModel",
    "DEFAULT_SYMPREC",
    "DEFAULT_TOLERANCE",
    "LossFloor",
    "OrderParameterConfig",
    "OrderParameterResult",
    "PROPERTIES",
    "PropertyRule",
    "Symmetrized",
    "Symmetry",
    "allowed_properties",
    "bispectrum",
    "characters",
    "describe_operation",
    "format_properties",
    "generate_group",
    "invariance_error",
    "invariant_basis",
    "learn_order_parameter",
    "loss_floor",
    "norms_per_irrep",
    "point_group",
    "point_group_operations",
    "power_spectrum",
    "project",
    "project_atoms",
    "project_cartesian",
    "projector",
    "reflection_matrix",
    "representation",
    "rotation_matrix",
    "schoenflies_name",
    "space_group",
    "sphere_signal",
    "spherical_projection",
    "stabilizer",
    "symmetrize",
]
