import math

import pytest
import torch

from euclidnn.o3 import (
    angles_to_matrix,
    matrix_to_angles,
    rand_angles,
    rand_matrix,
    wigner_3j,
    wigner_D,
)
from euclidnn.o3.wigner import wigner_D_from_matrix


def triples(lmax):
    return [
        (l1, l2, l3)
        for l1 in range(lmax + 1)
        for l2 in range(lmax + 1)
        for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1)
    ]


def test_l1_is_the_rotation_matrix():
    angles = rand_angles(10, dtype=torch.float64)
    assert (wigner_D(1, *angles) - angles_to_matrix(*angles)).abs().max() < 1e-14


@pytest.mark.parametrize("l", [0, 2, 5, 12])
def test_homomorphism_orthogonality_identity(l):
    R1, R2 = rand_matrix(5, dtype=torch.float64), rand_matrix(5, dtype=torch.float64)
    D1, D2, D12 = (wigner_D_from_matrix(l, R) for R in (R1, R2, R1 @ R2))
    assert (D12 - D1 @ D2).abs().max() < 1e-10
    eye = torch.eye(2 * l + 1, dtype=torch.float64)
    assert (D1 @ D1.transpose(-1, -2) - eye).abs().max() < 1e-12
    assert (
        wigner_D_from_matrix(l, R1.transpose(-1, -2)) - D1.transpose(-1, -2)
    ).abs().max() < 1e-10
    zero = torch.zeros((), dtype=torch.float64)
    assert (wigner_D(l, zero, zero, zero) - eye).abs().max() < 1e-14


def test_dtype_and_batch_follow_inputs():
    a = torch.zeros(2, 3)
    assert (
        wigner_D(3, a, a, a).shape == (2, 3, 7, 7) and wigner_D(3, a, a, a).dtype == torch.float32
    )


def test_wigner_3j_is_invariant_for_all_triples_up_to_6():
    R = rand_matrix(2, dtype=torch.float64)
    D = [wigner_D_from_matrix(l, R) for l in range(7)]
    worst = 0.0
    for l1, l2, l3 in triples(6):
        C = wigner_3j(l1, l2, l3)
        rotated = torch.einsum("ijk,zil,zjm,zkn->zlmn", C, D[l1], D[l2], D[l3])
        worst = max(worst, (rotated - C).abs().max().item())
        assert abs(C.norm().item() - 1) < 1e-13
    assert worst < 1e-10


def test_wigner_3j_large_l_invariant():
    R = rand_matrix(dtype=torch.float64)
    C = wigner_3j(9, 10, 11)
    rotated = torch.einsum(
        "ijk,il,jm,kn->lmn", C, *(wigner_D_from_matrix(l, R) for l in (9, 10, 11))
    )
    assert (rotated - C).abs().max() < 1e-10


def test_wigner_3j_known_values():
    delta = torch.eye(3, dtype=torch.float64)
    assert (wigner_3j(1, 1, 0)[..., 0] - delta / math.sqrt(3)).abs().max() < 1e-15
    epsilon = torch.zeros(3, 3, 3, dtype=torch.float64)
    for i, j, k in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
        epsilon[i, j, k], epsilon[j, i, k] = 1.0, -1.0
    # documented sign: C^{111}_{ijk} = +ε_ijk/√6 (e3nn's convention)
    assert (wigner_3j(1, 1, 1) - epsilon / math.sqrt(6)).abs().max() < 1e-15
    # C^{l l 0}_{ij} = δ_ij / sqrt(2l+1) (the real basis is orthonormal)
    for l in range(6):
        assert (
            wigner_3j(l, l, 0)[..., 0]
            - torch.eye(2 * l + 1, dtype=torch.float64) / math.sqrt(2 * l + 1)
        ).abs().max() < 1e-14


def test_wigner_3j_permutation_symmetry():
    """Swapping two indices multiplies C by (−1)^(l1+l2+l3)."""
    for l1, l2, l3 in triples(4):
        sign = (-1) ** (l1 + l2 + l3)
        assert (
            wigner_3j(l2, l1, l3) - sign * wigner_3j(l1, l2, l3).transpose(0, 1)
        ).abs().max() < 1e-14
        assert (
            wigner_3j(l3, l2, l1) - sign * wigner_3j(l1, l2, l3).permute(2, 1, 0)
        ).abs().max() < 1e-14


def test_wigner_3j_selection_rule_and_cache_copy():
    for bad in [(1, 1, 3), (0, 2, 1), (4, 1, 2)]:
        with pytest.raises(ValueError, match="triangle"):
            wigner_3j(*bad)
    with pytest.raises(ValueError):
        wigner_3j(1, 1, -1)
    C = wigner_3j(1, 1, 2)
    C.zero_()
    assert wigner_3j(1, 1, 2).norm() > 0.99
    assert wigner_3j(1, 1, 2, dtype=torch.float32).dtype == torch.float32


def test_spherical_harmonics_recurrence_with_3j():
    """Y^{l+1}_k(x) ∝ C^{l,1,l+1}_{ijk} Y^l_i(x) x_j (the product of Y^l and x projected on l+1)."""
    from euclidnn.o3 import spherical_harmonics

    x = torch.randn(20, 3, dtype=torch.float64)
    for l in range(6):
        lhs = spherical_harmonics(l + 1, x, True)
        rhs = torch.einsum(
            "ijk,zi,zj->zk",
            wigner_3j(l, 1, l + 1),
            spherical_harmonics(l, x, True),
            x / x.norm(dim=-1, keepdim=True),
        )
        ratio = (lhs * rhs).sum() / (rhs * rhs).sum()
        assert ratio > 0
        assert (lhs - ratio * rhs).abs().max() < 1e-10


def test_agrees_with_e3nn(e3nn_o3):
    angles = rand_angles(10, dtype=torch.float64)
    for l in range(9):
        assert (wigner_D(l, *angles) - e3nn_o3.wigner_D(l, *angles)).abs().max() < 1e-10
    for t in triples(5):
        assert (wigner_3j(*t) - e3nn_o3.wigner_3j(*t)).abs().max() < 1e-10, t


def test_matrix_to_angles_consistent_with_D():
    R = rand_matrix(4, dtype=torch.float64)
    assert (wigner_D(2, *matrix_to_angles(R)) - wigner_D_from_matrix(2, R)).abs().max() < 1e-14
