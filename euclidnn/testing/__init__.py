"""Public property checks shared by every test of every module (e3nn's ``util.test``, NequIP's mixin).

Each ``assert_*`` function returns the largest error it measured and raises
``AssertionError`` (with that number) when it exceeds the tolerance.

- :mod:`.o3`: functions and modules of irreps-typed tensors (:func:`assert_equivariant`,
  :func:`assert_normalized`, :func:`random_o3_elements`);
- :mod:`.physics`: models, ``Graph`` → energy [n_graphs] (forces and stress are derivatives
  of the energy, symmetry, batching, locality, smoothness at the cutoff, periodic images).
"""

from .o3 import assert_equivariant, assert_normalized, random_o3_elements
from .physics import (
    assert_batch_consistent,
    assert_forces_are_gradient,
    assert_local,
    assert_periodic_images_consistent,
    assert_permutation_equivariant,
    assert_rotation_equivariant,
    assert_smooth_at_cutoff,
    assert_stress_is_strain_derivative,
    assert_translation_invariant,
    rotated_graph,
)

__all__ = [
    "assert_equivariant",
    "assert_normalized",
    "random_o3_elements",
    "assert_forces_are_gradient",
    "assert_stress_is_strain_derivative",
    "assert_batch_consistent",
    "assert_local",
    "assert_smooth_at_cutoff",
    "assert_periodic_images_consistent",
    "assert_permutation_equivariant",
    "assert_translation_invariant",
    "assert_rotation_equivariant",
    "rotated_graph",
]
