"""euclidnn.testing is a package (o3 checks and model physics checks apart) with one public
surface: every check is importable from ``euclidnn.testing`` as before the split."""

from pathlib import Path

import euclidnn.testing
from euclidnn.testing import o3, physics

PUBLIC = {
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
}


def test_every_check_is_public_and_comes_from_one_module():
    assert set(euclidnn.testing.__all__) == PUBLIC
    assert set(o3.__all__) | set(physics.__all__) == PUBLIC
    assert not set(o3.__all__) & set(physics.__all__)
    for name in PUBLIC:
        module = o3 if name in o3.__all__ else physics
        assert getattr(euclidnn.testing, name) is getattr(module, name)
        assert getattr(module, name).__doc__


def test_o3_checks_do_not_need_models():
    # layering: the o3 checks see o3 only; the physics checks see data and models.predict
    source = Path(o3.__file__).read_text(encoding="utf-8")
    assert "euclidnn.models" not in source and "euclidnn.data" not in source
