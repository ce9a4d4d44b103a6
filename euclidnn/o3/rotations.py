r"""Parametrisations of 3D rotations and the conversions between them (e3nn 0.6 conventions).

- Matrices act on column vectors: :math:`x' = R x`.
- Euler angles are Y-X-Y: :math:`R(\alpha, \beta, \gamma) = R_y(\alpha) R_x(\beta) R_y(\gamma)`
  (γ applied first); :math:`\alpha, \gamma \in (-\pi, \pi]`, :math:`\beta \in [0, \pi]`.
- Quaternions are unit ``(w, x, y, z)`` with :math:`q = (\cos\frac\theta2, \sin\frac\theta2 \hat n)`.
- Axis–angle is a unit axis :math:`\hat n` [..., 3] and an angle θ (right-handed).

All functions take any batch shape ``[...]``; dtype and device come from the inputs.
"""

from __future__ import annotations

import math  # noqa: F401 (used by the doctests, which run in this module's globals)

import torch

__all__ = [
    "matrix_x",
    "matrix_y",
    "matrix_z",
    "rand_matrix",
    "rand_angles",
    "rand_quaternion",
    "rand_axis_angle",
    "identity_angles",
    "angles_to_matrix",
    "matrix_to_angles",
    "angles_to_xyz",
    "xyz_to_angles",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "quaternion_to_angles",
    "angles_to_quaternion",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "axis_angle_to_quaternion",
    "quaternion_to_axis_angle",
    "axis_angle_to_angles",
    "angles_to_axis_angle",
    "compose_quaternion",
    "inverse_quaternion",
    "compose_angles",
    "inverse_angles",
]


def _dtype(dtype):
    return torch.get_default_dtype() if dtype is None else dtype


def _rotation(angle: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """Rotation by angle in the (i, j) plane, i → j."""
    angle = torch.as_tensor(angle)
    if not angle.is_floating_point():
        angle = angle.to(torch.get_default_dtype())
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = [[one, zero, zero], [zero, one, zero], [zero, zero, one]]
    rows[i][i], rows[j][j], rows[i][j], rows[j][i] = c, c, -s, s
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def matrix_x(angle: torch.Tensor) -> torch.Tensor:
    r"""Rotation about x: ``[[1,0,0],[0,c,-s],[0,s,c]]``.  Shapes: [...] → [..., 3, 3]

    >>> (matrix_x(torch.tensor(math.pi / 2)) @ torch.tensor([0.0, 1.0, 0.0])).round()
    tensor([0., -0., 1.])
    """
    return _rotation(angle, 1, 2)


def matrix_y(angle: torch.Tensor) -> torch.Tensor:
    r"""Rotation about y: ``[[c,0,s],[0,1,0],[-s,0,c]]``.  Shapes: [...] → [..., 3, 3]"""
    return _rotation(angle, 2, 0)


def matrix_z(angle: torch.Tensor) -> torch.Tensor:
    r"""Rotation about z: ``[[c,-s,0],[s,c,0],[0,0,1]]``.  Shapes: [...] → [..., 3, 3]"""
    return _rotation(angle, 0, 1)


def rand_quaternion(*shape: int, dtype=None, device=None, generator=None) -> torch.Tensor:
    """Uniform (Haar) random unit quaternions with w ≥ 0.  Shapes: → [*shape, 4]"""
    q = torch.randn(*shape, 4, dtype=_dtype(dtype), device=device, generator=generator)
    q = q / q.norm(dim=-1, keepdim=True)
    return q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)


def rand_matrix(*shape: int, dtype=None, device=None, generator=None) -> torch.Tensor:
    """Uniform (Haar) random rotation matrices.  Shapes: → [*shape, 3, 3]

    >>> R = rand_matrix(4, dtype=torch.float64)
    >>> bool(torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64)))
    True
    """
    return quaternion_to_matrix(
        rand_quaternion(*shape, dtype=dtype, device=device, generator=generator)
    )


def rand_angles(*shape: int, dtype=None, device=None, generator=None):
    """Y-X-Y Euler angles of uniform random rotations: (alpha, beta, gamma), each [*shape]."""
    return matrix_to_angles(rand_matrix(*shape, dtype=dtype, device=device, generator=generator))


def rand_axis_angle(*shape: int, dtype=None, device=None, generator=None):
    """Axis [*shape, 3] and angle [*shape] of uniform random rotations."""
    return quaternion_to_axis_angle(
        rand_quaternion(*shape, dtype=dtype, device=device, generator=generator)
    )


def identity_angles(*shape: int, dtype=None, device=None):
    """Angles (0, 0, 0) of the identity, each [*shape]."""
    z = torch.zeros(*shape, dtype=_dtype(dtype), device=device)
    return z, z.clone(), z.clone()


def angles_to_matrix(alpha, beta, gamma) -> torch.Tensor:
    r""":math:`R_y(\alpha) R_x(\beta) R_y(\gamma)`.  Shapes: [...] ×3 → [..., 3, 3]"""
    alpha, beta, gamma = torch.broadcast_tensors(
        torch.as_tensor(alpha), torch.as_tensor(beta), torch.as_tensor(gamma)
    )
    return matrix_y(alpha) @ matrix_x(beta) @ matrix_y(gamma)


def angles_to_xyz(alpha, beta) -> torch.Tensor:
    r"""Unit vector :math:`R_y(\alpha) R_x(\beta) \hat y = (\sin\alpha\sin\beta, \cos\beta, \cos\alpha\sin\beta)`.

    Shapes: [...] ×2 → [..., 3]
    """
    alpha, beta = torch.broadcast_tensors(torch.as_tensor(alpha), torch.as_tensor(beta))
    return torch.stack(
        [torch.sin(alpha) * torch.sin(beta), torch.cos(beta), torch.cos(alpha) * torch.sin(beta)],
        dim=-1,
    )


def xyz_to_angles(xyz: torch.Tensor):
    r"""(α, β) with ``angles_to_xyz(α, β) = xyz / |xyz|``: β = acos(y), α = atan2(x, z).

    Shapes: [..., 3] → ([...], [...])
    """
    xyz = torch.nn.functional.normalize(xyz, dim=-1)
    beta = torch.acos(xyz[..., 1].clamp(-1, 1))
    alpha = torch.atan2(xyz[..., 0], xyz[..., 2])
    return alpha, beta


def matrix_to_angles(R: torch.Tensor):
    r"""Y-X-Y Euler angles of a rotation matrix (inverse of ``angles_to_matrix``).

    β and α locate :math:`R\hat y`; γ is the remaining rotation about y.
    Shapes: [..., 3, 3] → (α, β, γ) each [...]

    >>> a, b, c = matrix_to_angles(angles_to_matrix(torch.tensor(0.3), torch.tensor(1.2), torch.tensor(-2.0)))
    >>> [round(float(t), 6) for t in (a, b, c)]
    [0.3, 1.2, -2.0]
    """
    if not torch.allclose(torch.linalg.det(R), R.new_ones(())):
        raise ValueError("matrix_to_angles needs rotation matrices (det = +1)")
    alpha, beta = xyz_to_angles(R[..., :, 1])
    rest = angles_to_matrix(alpha, beta, torch.zeros_like(alpha)).transpose(-1, -2) @ R
    gamma = torch.atan2(rest[..., 0, 2], rest[..., 0, 0])
    return alpha, beta, gamma


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    r"""Rotation matrix of a unit quaternion (w, x, y, z):

    .. math:: R = (w^2 - |v|^2) I + 2 v v^T + 2 w [v]_\times

    Shapes: [..., 4] → [..., 3, 3]
    """
    w, x, y, z = q.unbind(-1)
    rows = [
        [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
    ]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (w ≥ 0) of a rotation matrix, through the axis–angle.

    Shapes: [..., 3, 3] → [..., 4]
    """
    return axis_angle_to_quaternion(*matrix_to_axis_angle(R))


def axis_angle_to_quaternion(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    r""":math:`q = (\cos\frac\theta2, \sin\frac\theta2 \hat n)`.  Shapes: [..., 3], [...] → [..., 4]"""
    axis = torch.nn.functional.normalize(axis, dim=-1)
    angle = torch.as_tensor(angle, dtype=axis.dtype, device=axis.device)
    axis, angle = torch.broadcast_tensors(axis, angle[..., None])
    return torch.cat([torch.cos(angle[..., :1] / 2), torch.sin(angle / 2) * axis], dim=-1)


def quaternion_to_axis_angle(q: torch.Tensor):
    r"""Unit axis [..., 3] and angle θ ∈ [0, π] [...] of a quaternion (the inverse of the above)."""
    q = q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)
    angle = 2 * torch.atan2(q[..., 1:].norm(dim=-1), q[..., 0])
    return torch.nn.functional.normalize(q[..., 1:], dim=-1), angle


def axis_angle_to_matrix(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    r"""Rodrigues: :math:`R = I + \sin\theta [n]_\times + (1 - \cos\theta) [n]_\times^2`.

    Shapes: [..., 3], [...] → [..., 3, 3]
    """
    return quaternion_to_matrix(axis_angle_to_quaternion(axis, angle))


def matrix_to_axis_angle(R: torch.Tensor):
    r"""Axis and angle θ ∈ [0, π] of a rotation matrix.

    :math:`\cos\theta = (\operatorname{tr} R - 1)/2`; the axis is the eigenvector of R with
    eigenvalue 1, read from the largest column of :math:`R + R^T - (\operatorname{tr}R - 1) I`
    (= 2(1 − cos θ) n nᵀ), with its sign fixed by the antisymmetric part (stable near θ = π).
    Shapes: [..., 3, 3] → ([..., 3], [...])
    """
    trace = R.diagonal(dim1=-2, dim2=-1).sum(-1)
    anti = torch.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1
    )
    angle = torch.atan2(anti.norm(dim=-1) / 2, (trace - 1) / 2)
    sym = (
        R
        + R.transpose(-1, -2)
        - (trace - 1)[..., None, None] * torch.eye(3, dtype=R.dtype, device=R.device)
    )
    best = sym.diagonal(dim1=-2, dim2=-1).argmax(-1)
    column = torch.gather(sym, -1, best[..., None, None].expand(*best.shape, 3, 1))[..., 0]
    sign = torch.where((column * anti).sum(-1) < 0, -1.0, 1.0).to(R.dtype)
    axis_from_sym = torch.nn.functional.normalize(column, dim=-1) * sign[..., None]
    axis_from_anti = torch.nn.functional.normalize(anti, dim=-1)
    small = (angle < 1e-3)[..., None]
    # near θ = 0 the symmetric part vanishes; the antisymmetric one (2 sin θ n) is the better estimate
    axis = torch.where(small, axis_from_anti, axis_from_sym)
    return axis, angle


def quaternion_to_angles(q: torch.Tensor):
    """Y-X-Y Euler angles of unit quaternions.  Shapes: [..., 4] → 3 × [...]"""
    return matrix_to_angles(quaternion_to_matrix(q))


def angles_to_quaternion(alpha, beta, gamma) -> torch.Tensor:
    """Unit quaternion (w ≥ 0) of Y-X-Y Euler angles.  Shapes: 3 × [...] → [..., 4]"""
    return matrix_to_quaternion(angles_to_matrix(alpha, beta, gamma))


def axis_angle_to_angles(axis: torch.Tensor, angle: torch.Tensor):
    """Y-X-Y Euler angles of an axis–angle rotation.  Shapes: [..., 3], [...] → 3 × [...]"""
    return matrix_to_angles(axis_angle_to_matrix(axis, angle))


def angles_to_axis_angle(alpha, beta, gamma):
    """Axis–angle of Y-X-Y Euler angles.  Shapes: 3 × [...] → ([..., 3], [...])"""
    return matrix_to_axis_angle(angles_to_matrix(alpha, beta, gamma))


def compose_quaternion(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    r"""Hamilton product :math:`q_1 q_2` (the rotation q2 then q1).  Shapes: [..., 4] ×2 → [..., 4]

    >>> q = compose_quaternion(torch.tensor([0.0, 1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0, 0.0]))
    >>> q
    tensor([0., 0., 0., 1.])
    """
    w1, x1, y1, z1 = q1.unbind(-1)
    w2, x2, y2, z2 = q2.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )


def inverse_quaternion(q: torch.Tensor) -> torch.Tensor:
    """Conjugate (w, −x, −y, −z): the inverse rotation of a unit quaternion.  Shapes: [..., 4] → [..., 4]"""
    return q * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=q.dtype, device=q.device)


def compose_angles(a1, b1, c1, a2, b2, c2):
    """Y-X-Y angles of R(a1, b1, c1) R(a2, b2, c2) (the second rotation applied first)."""
    return matrix_to_angles(angles_to_matrix(a1, b1, c1) @ angles_to_matrix(a2, b2, c2))


def inverse_angles(a, b, c):
    """Y-X-Y angles of the inverse rotation: (−γ, −β, −α)."""
    return -torch.as_tensor(c), -torch.as_tensor(b), -torch.as_tensor(a)
