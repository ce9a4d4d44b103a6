import math

import pytest
import torch

from euclidnn.o3 import rotations as r

N = 50


def assert_rotation(R):
    eye = torch.eye(3, dtype=R.dtype)
    assert (R @ R.transpose(-1, -2) - eye).abs().max() < 1e-12
    assert (torch.linalg.det(R) - 1).abs().max() < 1e-12


def test_random_elements_are_rotations():
    assert_rotation(r.rand_matrix(N, dtype=torch.float64))
    assert_rotation(r.angles_to_matrix(*r.rand_angles(N, dtype=torch.float64)))
    assert_rotation(r.axis_angle_to_matrix(*r.rand_axis_angle(N, dtype=torch.float64)))
    q = r.rand_quaternion(N, dtype=torch.float64)
    assert (q.norm(dim=-1) - 1).abs().max() < 1e-14 and (q[:, 0] >= 0).all()


def test_haar_mean_is_zero():
    """E[R] = 0 for the Haar measure (a biased sampler fails this)."""
    R = r.rand_matrix(20000, dtype=torch.float64)
    assert R.mean(0).abs().max() < 0.03


def test_elementary_rotations():
    t = torch.tensor(0.3, dtype=torch.float64)
    for fn, axis in [
        (r.matrix_x, [1.0, 0, 0]),
        (r.matrix_y, [0, 1.0, 0]),
        (r.matrix_z, [0, 0, 1.0]),
    ]:
        expected = r.axis_angle_to_matrix(torch.tensor(axis, dtype=torch.float64), t)
        assert (fn(t) - expected).abs().max() < 1e-15
    # right-handed: rotating x̂ by +90° about z gives ŷ
    assert torch.allclose(
        r.matrix_z(torch.tensor(math.pi / 2, dtype=torch.float64))
        @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
        torch.tensor([0, 1.0, 0], dtype=torch.float64),
        atol=1e-15,
    )


def test_angles_round_trip():
    R = r.rand_matrix(N, dtype=torch.float64)
    a, b, c = r.matrix_to_angles(R)
    assert (r.angles_to_matrix(a, b, c) - R).abs().max() < 1e-12
    assert ((b >= 0) & (b <= math.pi)).all()
    a0, b0, c0 = r.rand_angles(N, dtype=torch.float64)
    a1, b1, c1 = r.matrix_to_angles(r.angles_to_matrix(a0, b0, c0))
    # canonical angles: α, γ ∈ (−π, π], β ∈ [0, π] round trip exactly
    assert max((a1 - a0).abs().max(), (b1 - b0).abs().max(), (c1 - c0).abs().max()) < 1e-10
    with pytest.raises(ValueError):
        r.matrix_to_angles(-R)


def test_xyz_angles_round_trip():
    x = torch.randn(N, 3, dtype=torch.float64)
    u = r.angles_to_xyz(*r.xyz_to_angles(x))
    assert (u - x / x.norm(dim=-1, keepdim=True)).abs().max() < 1e-12
    a, b = r.xyz_to_angles(x)
    R = r.angles_to_matrix(a, b, torch.zeros_like(a))
    assert (R[..., :, 1] - u).abs().max() < 1e-12  # R(α, β, 0) ŷ = x̂


def test_quaternion_round_trips():
    q = r.rand_quaternion(N, dtype=torch.float64)
    R = r.quaternion_to_matrix(q)
    assert_rotation(R)
    assert (r.matrix_to_quaternion(R) - q).abs().max() < 1e-10
    assert (r.angles_to_quaternion(*r.quaternion_to_angles(q)) - q).abs().max() < 1e-10
    axis, angle = r.quaternion_to_axis_angle(q)
    assert (r.axis_angle_to_quaternion(axis, angle) - q).abs().max() < 1e-12
    # −q is the same rotation
    assert (r.quaternion_to_matrix(-q) - R).abs().max() < 1e-15


def test_quaternion_composition_is_matrix_product():
    q1, q2 = r.rand_quaternion(N, dtype=torch.float64), r.rand_quaternion(N, dtype=torch.float64)
    R = r.quaternion_to_matrix(r.compose_quaternion(q1, q2))
    assert (R - r.quaternion_to_matrix(q1) @ r.quaternion_to_matrix(q2)).abs().max() < 1e-12


@pytest.mark.parametrize(
    "angle_range", [(1e-3, math.pi - 1e-3), (math.pi - 1e-6, math.pi), (1e-9, 1e-4)]
)
def test_axis_angle_round_trip(angle_range):
    lo, hi = angle_range
    axis = torch.nn.functional.normalize(torch.randn(N, 3, dtype=torch.float64), dim=-1)
    angle = lo + (hi - lo) * torch.rand(N, dtype=torch.float64)
    R = r.axis_angle_to_matrix(axis, angle)
    axis1, angle1 = r.matrix_to_axis_angle(R)
    assert (angle1 - angle).abs().max() < 1e-8
    assert (r.axis_angle_to_matrix(axis1, angle1) - R).abs().max() < 1e-8
    # Rodrigues' formula
    K = torch.zeros(N, 3, 3, dtype=torch.float64)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    K = K - K.transpose(-1, -2)
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    assert (R - (torch.eye(3, dtype=torch.float64) + s * K + (1 - c) * K @ K)).abs().max() < 1e-12
    a, b, g = r.axis_angle_to_angles(axis, angle)
    assert (r.angles_to_matrix(a, b, g) - R).abs().max() < 1e-10
    axis2, angle2 = r.angles_to_axis_angle(a, b, g)
    assert (r.axis_angle_to_matrix(axis2, angle2) - R).abs().max() < 1e-8


def test_inverses_and_composition():
    q = r.rand_quaternion(N, dtype=torch.float64)
    identity = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    assert (r.compose_quaternion(q, r.inverse_quaternion(q)) - identity).abs().max() < 1e-14
    a1, a2 = r.rand_angles(N, dtype=torch.float64), r.rand_angles(N, dtype=torch.float64)
    R1, R2 = r.angles_to_matrix(*a1), r.angles_to_matrix(*a2)
    assert (r.angles_to_matrix(*r.compose_angles(*a1, *a2)) - R1 @ R2).abs().max() < 1e-12
    assert (r.angles_to_matrix(*r.inverse_angles(*a1)) - R1.transpose(-1, -2)).abs().max() < 1e-14


def test_agrees_with_e3nn(e3nn_o3):
    angles = r.rand_angles(N, dtype=torch.float64)
    assert (r.angles_to_matrix(*angles) - e3nn_o3.angles_to_matrix(*angles)).abs().max() < 1e-14
    R = r.rand_matrix(N, dtype=torch.float64)
    for ours, theirs in zip(r.matrix_to_angles(R), e3nn_o3.matrix_to_angles(R)):
        assert (ours - theirs).abs().max() < 1e-10
    q = r.rand_quaternion(N, dtype=torch.float64)
    assert (r.quaternion_to_matrix(q) - e3nn_o3.quaternion_to_matrix(q)).abs().max() < 1e-12
    axis, angle = r.rand_axis_angle(N, dtype=torch.float64)
    assert (
        r.axis_angle_to_matrix(axis, angle) - e3nn_o3.axis_angle_to_matrix(axis, angle)
    ).abs().max() < 1e-12
    x = torch.randn(N, 3, dtype=torch.float64)
    for ours, theirs in zip(r.xyz_to_angles(x), e3nn_o3.xyz_to_angles(x)):
        assert (ours - theirs).abs().max() < 1e-12
