import pytest
import torch

from euclidnn.o3 import Irrep, Irreps, rand_matrix


def random_o3(n):
    R = rand_matrix(n, dtype=torch.float64)
    return R * torch.tensor([(-1.0) ** i for i in range(n)], dtype=torch.float64)[:, None, None]


@pytest.mark.parametrize(
    "text, printed",
    [
        ("16x0e + 8x1o + 2e", "16x0e+8x1o+1x2e"),
        ("0x1o", "0x1o"),
        ("  3y + 2x4y ", "1x3o+2x4e"),
        ("", ""),
        ("1e+1e+0o", "1x1e+1x1e+1x0o"),
        ("128x12o", "128x12o"),
    ],
)
def test_parse_and_print_round_trip(text, printed):
    irreps = Irreps(text)
    assert str(irreps) == printed
    assert Irreps(str(irreps)) == irreps
    assert Irreps(irreps) is irreps


@pytest.mark.parametrize(
    "bad, token",
    [
        ("16x0e + 8x1q", "8x1q"),
        ("2xx1o", "2xx1o"),
        ("x1e", "x1e"),
        ("1e + -1o", "-1o"),
        ("1e+", "''"),
    ],
)
def test_malformed_irreps_name_the_token(bad, token):
    with pytest.raises(ValueError, match=token.replace("+", r"\+")):
        Irreps(bad)


@pytest.mark.parametrize("bad", ["1q", "e", "-1e", "1.5o"])
def test_malformed_irrep(bad):
    with pytest.raises(ValueError, match="cannot parse irrep"):
        Irrep(bad)
    with pytest.raises(ValueError):
        Irrep(1, 0)
    with pytest.raises(ValueError):
        Irrep(-1, 1)


def test_irrep_values():
    assert Irrep("3y") == Irrep(3, -1) == (3, -1)
    assert Irrep("2y").p == 1
    assert Irrep("5o").dim == 11
    assert Irrep("0e").is_scalar() and not Irrep("0o").is_scalar()
    assert {Irrep("1o"): 1}[Irrep(1, -1)] == 1
    with pytest.raises(AttributeError):
        Irrep("1o").l = 2


def test_irrep_product_is_all_allowed_irreps():
    for l1 in range(4):
        for l2 in range(4):
            for p1 in (1, -1):
                for p2 in (1, -1):
                    out = list(Irrep(l1, p1) * Irrep(l2, p2))
                    assert [ir.l for ir in out] == list(range(abs(l1 - l2), l1 + l2 + 1))
                    assert all(ir.p == p1 * p2 for ir in out)


def test_irreps_attributes():
    irreps = Irreps("16x0e + 8x1o + 0x3e + 2e")
    assert irreps.dim == 16 + 24 + 5
    assert irreps.num_irreps == 25
    assert irreps.ls == [0] * 16 + [1] * 8 + [2]
    assert irreps.lmax == 2  # a 0x term does not count
    assert len(irreps) == 4
    assert irreps[1].mul == 8 and irreps[1].ir == Irrep("1o") and irreps[1].dim == 24
    assert isinstance(irreps[1:], Irreps) and str(irreps[1:]) == "8x1o+0x3e+1x2e"
    assert [mul for mul, (l, p) in irreps] == [16, 8, 0, 1]
    assert irreps.count("1o") == 8 and irreps.count("2o") == 0
    assert Irrep("2e") in irreps and "3o" not in irreps
    slices = irreps.slices()
    assert [(s.start, s.stop) for s in slices] == [(0, 16), (16, 40), (40, 40), (40, 45)]
    with pytest.raises(ValueError):
        _ = Irreps("").lmax
    with pytest.raises(AttributeError):
        irreps.extra = 1


def test_irreps_algebra():
    a, b = Irreps("2x0e + 1o"), Irreps("1o + 3x2e")
    assert str(a + b) == "2x0e+1x1o+1x1o+3x2e"
    assert str(a + "0o") == "2x0e+1x1o+1x0o"
    assert str(2 * a) == str(a * 2) == "2x0e+1x1o+2x0e+1x1o"
    assert str(3 * Irrep("1e")) == "3x1e"
    assert str(Irrep("1e") + Irrep("0e")) == "1x1e+1x0e"
    assert str((a + b).simplify()) == "2x0e+2x1o+3x2e"
    assert str(Irreps("1e + 0x2e + 1e + 0e + 1e").simplify()) == "2x1e+1x0e+1x1e"
    assert str(Irreps.spherical_harmonics(3)) == "1x0e+1x1o+1x2e+1x3o"
    assert str(Irreps.spherical_harmonics(2, p=1)) == "1x0e+1x1e+1x2e"


def test_sort_is_a_permutation_with_its_inverse():
    irreps = Irreps("2o + 1e + 0e + 1e + 0o + 3x1o")
    irreps_sorted, p, inv = irreps.sort()
    assert [ir for _, ir in irreps_sorted] == sorted(ir for _, ir in irreps)
    assert str(irreps_sorted) == "1x0o+1x0e+3x1o+1x1e+1x1e+1x2o"
    for new, old in enumerate(inv):
        assert irreps_sorted[new] == irreps[old]
        assert p[old] == new
    assert str(irreps.regroup()) == "1x0o+1x0e+3x1o+2x1e+1x2o"


def test_D_is_a_representation_of_O3():
    irreps = Irreps("2x0e + 0o + 1o + 1e + 2e + 2o + 3o")
    R1, R2 = random_o3(4), random_o3(4).flip(0)
    D1, D2, D12 = irreps.D_from_matrix(R1), irreps.D_from_matrix(R2), irreps.D_from_matrix(R1 @ R2)
    assert D12.shape == (4, irreps.dim, irreps.dim)
    assert (D12 - D1 @ D2).abs().max() < 1e-10
    eye = torch.eye(irreps.dim, dtype=torch.float64)
    assert (D1 @ D1.transpose(-1, -2) - eye).abs().max() < 1e-10
    det = torch.linalg.det(R1)
    assert (Irreps("1o").D_from_matrix(R1) - R1).abs().max() < 1e-12
    assert (Irreps("1e").D_from_matrix(R1) - det[:, None, None] * R1).abs().max() < 1e-12
    assert (Irreps("0o").D_from_matrix(R1)[:, 0, 0] - det).abs().max() < 1e-12
    inversion = -torch.eye(3, dtype=torch.float64)
    expected = torch.tensor(
        [1, 1, -1, -1, -1, -1, 1, 1, 1] + [1] * 5 + [-1] * 5 + [-1] * 7, dtype=torch.float64
    )
    assert (irreps.D_from_matrix(inversion) - torch.diag(expected)).abs().max() < 1e-12


def test_D_from_angles_quaternion_axis_angle_agree_with_matrix():
    from euclidnn.o3 import (
        angles_to_matrix,
        matrix_to_axis_angle,
        matrix_to_quaternion,
        rand_angles,
    )

    irreps = Irreps("0e + 1o + 2e + 3o")
    angles = rand_angles(3, dtype=torch.float64)
    R = angles_to_matrix(*angles)
    D = irreps.D_from_matrix(R)
    assert (irreps.D_from_angles(*angles) - D).abs().max() < 1e-12
    assert (irreps.D_from_quaternion(matrix_to_quaternion(R)) - D).abs().max() < 1e-12
    assert (irreps.D_from_axis_angle(*matrix_to_axis_angle(R)) - D).abs().max() < 1e-12
    k = torch.ones(3)
    assert (irreps.D_from_angles(*angles, k) - irreps.D_from_matrix(-R)).abs().max() < 1e-12


def test_agrees_with_e3nn(e3nn_o3):
    for text in [
        "16x0e + 8x1o + 2e",
        "1e + 1e + 0e + 0x2o + 1e",
        "2o + 1e + 0e + 1e + 0o",
        "3y+0x1o",
    ]:
        ours, theirs = Irreps(text), e3nn_o3.Irreps(text)
        assert str(ours) == str(theirs)
        assert str(ours.simplify()) == str(theirs.simplify())
        assert (str(ours.sort().irreps), ours.sort().p, ours.sort().inv) == (
            str(theirs.sort().irreps),
            theirs.sort().p,
            theirs.sort().inv,
        )
        assert (ours.dim, ours.num_irreps, ours.ls) == (theirs.dim, theirs.num_irreps, theirs.ls)
    irreps = "2x0e + 0o + 1o + 1e + 2e + 2o + 3o + 4e"
    R = random_o3(6)
    ours = Irreps(irreps).D_from_matrix(R)
    theirs = e3nn_o3.Irreps(irreps).D_from_matrix(R)
    assert (ours - theirs).abs().max() < 1e-10
