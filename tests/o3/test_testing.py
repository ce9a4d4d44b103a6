import pytest
import torch

from euclidnn.o3 import Irreps, spherical_harmonics
from euclidnn.testing import assert_equivariant, random_o3_elements


def test_random_elements_cover_rotations_and_inversion():
    g = random_o3_elements(6)
    assert (g @ g.transpose(-1, -2) - torch.eye(3, dtype=torch.float64)).abs().max() < 1e-12
    assert torch.equal(g[0], -torch.eye(3, dtype=torch.float64))
    assert torch.linalg.det(g).round().tolist() == [-1, 1, -1, 1, -1, 1]


def test_equivariant_functions_pass():
    assert (
        assert_equivariant(
            lambda x: spherical_harmonics([0, 1, 2, 3], x, True),
            "1o",
            Irreps.spherical_harmonics(3),
        )
        < 1e-10
    )
    assert (
        assert_equivariant(lambda a, b: (a * b).sum(-1, keepdim=True), ["1o", "1o"], "0e") < 1e-10
    )
    assert assert_equivariant(torch.linalg.cross, ["1o", "1o"], "1e") < 1e-10
    # several outputs
    assert (
        assert_equivariant(lambda x: (x, x.norm(dim=-1, keepdim=True)), "1o", ["1o", "0e"]) < 1e-10
    )


def test_parity_errors_are_caught():
    with pytest.raises(AssertionError, match="equivariance error"):
        assert_equivariant(lambda x: x, "1o", "1e")  # passes every rotation, fails the inversion
    with pytest.raises(AssertionError):
        assert_equivariant(torch.linalg.cross, ["1o", "1o"], "1o")
    with pytest.raises(AssertionError):
        assert_equivariant(lambda x: x * x, "1o", "1o")  # not even rotation equivariant


def test_rotation_errors_are_caught_and_measured():
    bias = torch.tensor([0.0, 0.0, 1e-3], dtype=torch.float64)
    with pytest.raises(AssertionError):
        assert_equivariant(lambda x: x + bias, "1o", "1o")
    error = assert_equivariant(lambda x: x + bias, "1o", "1o", tolerance=1.0)
    assert 1e-4 < error <= 2e-3 + 1e-12


def test_module_with_irreps_attributes_and_float32():
    class Scale(torch.nn.Module):
        irreps_in = Irreps("2x1o + 0e")
        irreps_out = Irreps("2x1o + 0e")

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.tensor(2.0))

        def forward(self, x):
            return self.weight * x

    module = Scale()
    assert assert_equivariant(module) < 1e-12
    assert module.weight.dtype == torch.float32  # the check worked on a copy
    args = [torch.randn(3, 7)]
    assert assert_equivariant(module.float(), args_in=args) < 1e-5


def test_invariant_inputs_are_left_alone():
    index = torch.tensor([0, 1, 1, 0])
    x = torch.randn(4, 3, dtype=torch.float64)

    def scatter(v, idx):
        return torch.zeros(2, 3, dtype=v.dtype).index_add(0, idx, v)

    assert assert_equivariant(scatter, ["1o", None], "1o", args_in=[x, index]) < 1e-12
    with pytest.raises(ValueError, match="args_in"):
        assert_equivariant(scatter, ["1o", None], "1o")
