"""o3.Linear: equivariance, normalization, Schur structure, agreement with e3nn."""

import pytest
import torch

from euclidnn.o3 import Irreps
from euclidnn.o3.linear import Linear
from euclidnn.testing import assert_equivariant, assert_normalized

F64 = torch.float64
CASES = [
    ("4x0e + 2x1o + 3x0e + 1x2e", "3x0e + 1x1o + 2x1o + 2x1e"),  # repeated irreps, unreachable 1e
    ("8x0e + 8x1o + 8x1o + 8x0e + 4x2e + 2x0o", "16x0e + 8x1o + 4x2e + 1x0o"),
]


@pytest.mark.parametrize("irreps_in, irreps_out", CASES)
def test_equivariant(irreps_in, irreps_out):
    lin = Linear(irreps_in, irreps_out, biases=True)
    torch.nn.init.normal_(lin.bias)  # biases on 0e only: must not break equivariance
    assert_equivariant(lin, tolerance=1e-10)


def test_normalized():
    lin = Linear("32x0e + 32x1o + 16x1o + 16x2e", "24x0e + 24x1o + 8x2e")
    assert_normalized(lin, rtol=0.15)


def test_unreachable_outputs_are_zero_and_muls_only_mix():
    lin = Linear("2x1o", "1x1o + 1x1e").to(F64)
    x = torch.randn(3, 6, dtype=F64)
    y = lin(x)
    assert torch.all(y[:, 3:] == 0)
    w = lin.weight.detach().view(2, 1) / 2**0.5
    torch.testing.assert_close(
        y[:, :3], (x.view(3, 2, 3) * w.view(1, 2, 1)).sum(1), rtol=0, atol=1e-14
    )


@pytest.mark.parametrize("irreps_in, irreps_out", CASES)
def test_equals_e3nn(e3nn_o3, irreps_in, irreps_out):
    ours = Linear(irreps_in, irreps_out, biases=True).to(F64)
    theirs = e3nn_o3.Linear(irreps_in, irreps_out, biases=True).to(F64)
    assert ours.weight.numel() == theirs.weight.numel() and ours.bias.numel() == theirs.bias.numel()
    torch.nn.init.normal_(ours.bias)
    theirs.weight.data.copy_(
        ours.weight.data
    )  # same flat layout: blocks (i_in, i_out) in e3nn's order
    theirs.bias.data.copy_(ours.bias.data)
    x = Irreps(irreps_in).randn(7, -1, dtype=F64)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-10)


def test_compiles_without_graph_breaks():
    lin = Linear(*CASES[1], biases=True)
    x = Irreps(CASES[1][0]).randn(4, -1)
    torch.testing.assert_close(torch.compile(lin, fullgraph=True, backend="eager")(x), lin(x))


@pytest.mark.parametrize("irreps_in, irreps_out", CASES)
def test_dense_matrix_is_the_map(irreps_in, irreps_out):
    lin = Linear(irreps_in, irreps_out, biases=True).to(F64)
    torch.nn.init.normal_(lin.bias)
    x = Irreps(irreps_in).randn(5, -1, dtype=F64)
    y = x @ lin.dense_matrix() + lin(torch.zeros_like(x[:1]))
    torch.testing.assert_close(y, lin(x), rtol=0, atol=1e-12)


def test_biases_on_outputs_no_input_reaches():
    lin = Linear("2x1o", "3x0e + 1x1o", biases=True)
    torch.nn.init.normal_(lin.bias)
    y = lin(torch.randn(4, 6))
    assert torch.equal(y[:, :3], lin.bias.detach().expand(4, 3))


@pytest.mark.parametrize("irreps_in, irreps_out", CASES)
def test_degree_index_gives_the_map_per_degree(irreps_in, irreps_out):
    """Features regrouped per degree ([n, 2l+1, Σ mul], terms side by side) times
    weight[index] · scale equal forward(), degree by degree."""
    lin = Linear(irreps_in, irreps_out).to(F64)
    x = torch.randn(5, lin.irreps_in.dim, dtype=F64)
    y = lin(x)

    def per_degree(features, irreps, l):  # noqa: E741
        blocks, start = [], 0
        for mul, ir in irreps:
            if ir.l == l:
                blocks.append(features[:, start : start + mul * ir.dim].view(-1, mul, ir.dim))
            start += mul * ir.dim
        return torch.cat(blocks, dim=1).transpose(1, 2) if blocks else None  # [n, d, Σ mul]

    for l in {ir.l for _, ir in lin.irreps_out}:  # noqa: E741
        index, scale = lin.degree_index(l)
        want, x_l = per_degree(y, lin.irreps_out, l), per_degree(x, lin.irreps_in, l)
        if x_l is None:
            assert index.numel() == 0 and bool((want == 0).all())
            continue
        matrix = lin.weight.detach()[index] * scale
        torch.testing.assert_close(x_l @ matrix, want, rtol=0, atol=1e-12)
