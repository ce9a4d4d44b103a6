import math

import pytest
import torch

from euclidnn.o3 import CartesianTensor, Irreps, ReducedTensorProducts, rand_matrix, wigner_3j
from euclidnn.testing import assert_equivariant

FORMULAS = {
    "ij=ji": "1x0e+1x2e",
    "ij=-ji": "1x1e",
    "ij": "1x0e+1x1e+1x2e",
    "ijk=jik=ikj": "1x1o+1x3o",
    "ijk=-jik=-ikj": "1x0o",
    "ijkl=jikl=klij": "2x0e+2x2e+1x4e",
}


def random_o3(n):
    R = rand_matrix(n, dtype=torch.float64)
    return R * torch.tensor([(-1.0) ** i for i in range(n)], dtype=torch.float64)[:, None, None]


def rotate_cartesian(T, R):
    """T'_{ij…} = R_ia R_jb … T_{ab…} for a batch of R [z, 3, 3]."""
    n = T.dim()
    letters = "abcdefgh"[:n]
    out_letters = "ijklmnop"[:n]
    spec = (
        ",".join(f"z{o}{a}" for o, a in zip(out_letters, letters)) + f",{letters}->z{out_letters}"
    )
    return torch.einsum(spec, *([R] * n), T)


def symmetrize(T, formula):
    from euclidnn.o3.cartesian import _group, _parse_formula

    indices, relations = _parse_formula(formula)
    group = _group(len(indices), relations)
    return sum(s * T.permute(p) for s, p in group) / len(group)


@pytest.mark.parametrize("formula", list(FORMULAS))
def test_irreps_projection_and_equivariance(formula):
    ct = CartesianTensor(formula)
    assert str(ct) == FORMULAS[formula] and isinstance(ct, Irreps)
    n = len(ct.indices)
    T = torch.randn((3,) * n, dtype=torch.float64)
    y = ct.from_cartesian(T)
    assert y.shape == (ct.dim,)
    # to_cartesian ∘ from_cartesian is the projector onto the allowed symmetry
    assert (ct.to_cartesian(y) - symmetrize(T, formula)).abs().max() < 1e-12
    Q = ct.change_of_basis().flatten(1)
    assert (Q @ Q.T - torch.eye(ct.dim, dtype=torch.float64)).abs().max() < 1e-12
    # y(R·T) = D(R) y(T) for rotations and improper elements
    R = random_o3(4)
    lhs = ct.from_cartesian(rotate_cartesian(T, R))
    rhs = torch.einsum("zij,j->zi", ct.D_from_matrix(R), y)
    assert (lhs - rhs).abs().max() < 1e-10


def test_vector_outer_product_decomposition():
    """(x⊗y) = 0e + 1e + 2e: the scalar is x·y/√3, the vector (x×y)/√2 in e3nn's basis."""
    ct = CartesianTensor("ij")
    x, y = torch.randn(2, 5, 3, dtype=torch.float64)
    out = ct.from_vectors(x, y)
    assert (out - ct.from_cartesian(x[:, :, None] * y[:, None, :])).abs().max() < 1e-14
    assert (out[:, 0] - (x * y).sum(-1) / math.sqrt(3)).abs().max() < 1e-14
    assert (out[:, 1:4] - torch.linalg.cross(x, y) / math.sqrt(2)).abs().max() < 1e-14
    Q2 = math.sqrt(5) * wigner_3j(1, 1, 2)
    assert (out[:, 4:] - torch.einsum("ijm,zi,zj->zm", Q2, x, y)).abs().max() < 1e-14


def test_reduced_tensor_products_equivariant_and_symmetric():
    rtp = ReducedTensorProducts("ij=ji", i="1o + 1e + 2e")
    assert rtp.irreps_in == (Irreps("1o + 1e + 2e"),) * 2
    assert (
        rtp.irreps_out.dim == 11 * 12 // 2
    )  # dimension of the symmetric square of an 11-dim space
    assert_equivariant(rtp, [rtp.irreps_in[0]] * 2, rtp.irreps_out)
    x, y = torch.randn(2, 4, 11)
    assert torch.allclose(rtp(x, y), rtp(y, x), atol=1e-6)
    rtp3 = ReducedTensorProducts("ijk=jik=jki", i="0e + 1o")
    assert rtp3.irreps_out.dim == 4 * 5 * 6 // 6
    assert_equivariant(rtp3, ["0e + 1o"] * 3, rtp3.irreps_out)
    filtered = ReducedTensorProducts("ij=ji", filter_ir_out=["0e"], i="2x1o")
    assert str(filtered.irreps_out) == "3x0e"


@pytest.mark.parametrize(
    "bad, token", [("ij=jk", "jk"), ("ii", "ii"), ("ij=-j", "-j"), ("i1=1i", "i1")]
)
def test_bad_formulas_name_the_token(bad, token):
    with pytest.raises(ValueError, match=token):
        CartesianTensor(bad)


def test_related_indices_need_same_irreps():
    with pytest.raises(ValueError, match="different irreps"):
        ReducedTensorProducts("ij=ji", i="1o", j="1e")
    with pytest.raises(ValueError, match="no irreps"):
        ReducedTensorProducts("ij", i="1o")


@pytest.mark.parametrize("formula", list(FORMULAS))
def test_agrees_with_e3nn(e3nn_o3, formula):
    from e3nn.io import CartesianTensor as E3nnCartesianTensor

    ours, theirs = CartesianTensor(formula), E3nnCartesianTensor(formula)
    assert str(ours) == str(theirs)
    T = torch.randn((4,) + (3,) * len(ours.indices), dtype=torch.float64)
    assert (ours.from_cartesian(T) - theirs.from_cartesian(T)).abs().max() < 1e-10
    y = torch.randn(4, ours.dim, dtype=torch.float64)
    assert (ours.to_cartesian(y) - theirs.to_cartesian(y)).abs().max() < 1e-10


def test_reduced_tensor_products_agree_with_e3nn(e3nn_o3):
    for formula, irreps in [("ij=ji", "1o + 1e"), ("ij=ji", "2x1o"), ("ijk=jik=jki", "0e + 1o")]:
        ours, theirs = (
            ReducedTensorProducts(formula, i=irreps),
            e3nn_o3.ReducedTensorProducts(formula, i=irreps),
        )
        assert str(ours.irreps_out) == str(theirs.irreps_out)
        assert (ours.change_of_basis - theirs.change_of_basis).abs().max() < 1e-10
