"""TensorProduct: equivariance, normalization, the l ≤ 1 special cases, agreement with e3nn."""

import math

import pytest
import torch

from euclidnn.o3 import Irreps, spherical_harmonics
from euclidnn.o3.tensor_product import (
    TensorProduct,
    elementwise_paths,
    fully_connected_paths,
    instruction_paths,
    uvu_paths,
)
from euclidnn.testing import assert_equivariant, assert_normalized

IRREPS = "3x0e + 2x0o + 2x1o + 2x1e + 2x2e + 1x3o"
SH = "0e + 1o + 2e + 3o"
F64 = torch.float64


def _uvu(irreps=IRREPS, sh=SH, target=IRREPS):
    return TensorProduct(irreps, sh, uvu_paths(irreps, sh, target))


@pytest.mark.parametrize(
    "make",
    [
        lambda: TensorProduct(
            IRREPS, SH, fully_connected_paths(IRREPS, SH, IRREPS), internal_weights=True
        ),
        lambda: TensorProduct(
            IRREPS,
            "2x0e + 2x1o + 2x2e",
            fully_connected_paths(IRREPS, "2x0e + 2x1o + 2x2e", IRREPS),
            internal_weights=True,
        ),
        lambda: TensorProduct(IRREPS, IRREPS, elementwise_paths(IRREPS, IRREPS)),
    ],
)
def test_equivariant_shared_weights(make):
    assert_equivariant(make(), tolerance=1e-10)


@pytest.mark.parametrize("sh", [SH, "2x0e + 3x1o + 2x2e"])
def test_equivariant_per_edge_weights(sh):
    tp = _uvu(sh=sh).to(F64)
    x1 = Irreps(IRREPS).randn(6, -1, dtype=F64)
    x2 = Irreps(sh).randn(6, -1, dtype=F64)
    w = torch.randn(6, tp.weight_numel, dtype=F64)
    assert_equivariant(tp, [IRREPS, sh, None], tp.irreps_out, args_in=[x1, x2, w], tolerance=1e-10)


def test_weights_broadcast_shared_equals_repeated():
    tp = _uvu().to(F64)
    x1, x2 = Irreps(IRREPS).randn(5, -1, dtype=F64), Irreps(SH).randn(5, -1, dtype=F64)
    w = torch.randn(tp.weight_numel, dtype=F64)
    torch.testing.assert_close(tp(x1, x2, w), tp(x1, x2, w.expand(5, -1)), rtol=0, atol=1e-13)
    # extra leading dimensions broadcast too
    y = tp(x1.view(5, 1, -1), x2.view(1, 5, -1), w)
    assert y.shape == (5, 5, tp.irreps_out.dim)
    torch.testing.assert_close(y[2, 3], tp(x1[2], x2[3], w), rtol=0, atol=1e-13)


@pytest.mark.parametrize("path_normalization", ["element", "path"])
def test_normalized(path_normalization):
    tp = TensorProduct(
        IRREPS,
        SH,
        fully_connected_paths(IRREPS, SH, IRREPS),
        internal_weights=True,
        path_normalization=path_normalization,
    )
    torch.manual_seed(1)
    x1, x2 = (
        torch.randn(20000, Irreps(IRREPS).dim, dtype=F64),
        torch.randn(20000, Irreps(SH).dim, dtype=F64),
    )
    # weights drawn per sample, so the average runs over weights as well as inputs; every output
    # term separately, so a wrong constant on one path cannot hide
    out = tp.to(F64)(x1, x2, torch.randn(20000, tp.weight_numel, dtype=F64))
    for (mul, ir), sl in zip(tp.irreps_out, tp.irreps_out.slices()):
        assert abs(out[:, sl].pow(2).mean().item() - 1.0) < 0.1, (mul, ir)
    uvu = _uvu()
    assert_normalized(
        uvu, args_in=[x1, x2, torch.randn(20000, uvu.weight_numel, dtype=F64)], rtol=0.1
    )


def _single(ir1, ir2, ir_out):
    tp = TensorProduct(ir1, ir2, instruction_paths(ir1, ir2, ir_out, [(0, 0, 0, "uvw", False)])).to(
        F64
    )
    return lambda a, b: tp(a, b)


def test_l_le_1_interactions_are_the_familiar_products():
    """With component normalization and one unweighted path, α C gives, for x, y ∈ R³, s, t ∈ R:

    0⊗0→0: s t;  0⊗1→1: s y;  1⊗0→1: s x;  1⊗1→0: x·y / √3;  1⊗1→1: (x × y) / √2.
    (α = 2l_out+1 and C(1,1,0) = δ/√3, C(1,1,1) = ε/√6, C(0,l,l) = δ/√(2l+1).)
    """
    s, t = torch.randn(7, 1, dtype=F64), torch.randn(7, 1, dtype=F64)
    x, y = torch.randn(7, 3, dtype=F64), torch.randn(7, 3, dtype=F64)

    def close(a, b):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)

    close(_single("0e", "0e", "0e")(s, t), s * t)
    close(_single("0e", "1o", "1o")(s, y), s * y)
    close(_single("1o", "0e", "1o")(x, s), s * x)
    close(_single("1o", "1o", "0e")(x, y), (x * y).sum(-1, keepdim=True) / math.sqrt(3))
    close(_single("1o", "1o", "1e")(x, y), torch.linalg.cross(x, y) / math.sqrt(2))


def test_bad_paths_are_rejected():
    with pytest.raises(ValueError, match="not in"):
        instruction_paths("1o", "1o", "2o", [(0, 0, 0, "uvw", True)])
    with pytest.raises(ValueError, match="do not fit"):
        instruction_paths("2x1o", "1o", "3x0e", [(0, 0, 0, "uvu", True)])


def test_compiles_without_graph_breaks():
    tp = _uvu(sh="0e + 1o + 2e")
    x1, x2 = Irreps(IRREPS).randn(8, -1), Irreps("0e + 1o + 2e").randn(8, -1)
    w = torch.randn(8, tp.weight_numel)
    compiled = torch.compile(tp, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x1, x2, w), tp(x1, x2, w))


# ------------------------------------------------------------------ agreement with e3nn 0.6


def _e3nn_instructions(paths):
    return [(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight, p.path_weight) for p in paths.paths]


@pytest.mark.parametrize("irreps_in2", [SH, "2x0e + 3x1o + 2x1e"])
def test_fully_connected_equals_e3nn(e3nn_o3, irreps_in2):
    out = "2x0e + 3x1o + 2x1e + 2x2e + 0o"
    ours = TensorProduct(
        IRREPS, irreps_in2, fully_connected_paths(IRREPS, irreps_in2, out), internal_weights=True
    ).to(F64)
    theirs = e3nn_o3.FullyConnectedTensorProduct(IRREPS, irreps_in2, out).to(F64)
    assert ours.weight_numel == theirs.weight_numel and str(ours.irreps_out) == str(
        theirs.irreps_out
    )
    theirs.weight.data.copy_(ours.weight.data)  # same layout: no mapping needed
    x1, x2 = Irreps(IRREPS).randn(9, -1, dtype=F64), Irreps(irreps_in2).randn(9, -1, dtype=F64)
    torch.testing.assert_close(ours(x1, x2), theirs(x1, x2), rtol=0, atol=1e-10)


@pytest.mark.parametrize("irreps_in2", [SH, "2x0e + 3x1o + 2x2e"])
@pytest.mark.parametrize("path_normalization", ["element", "path"])
def test_uvu_per_edge_equals_e3nn(e3nn_o3, irreps_in2, path_normalization):
    paths = uvu_paths(IRREPS, irreps_in2, IRREPS)
    ours = TensorProduct(IRREPS, irreps_in2, paths, path_normalization=path_normalization)
    theirs = e3nn_o3.TensorProduct(
        IRREPS,
        irreps_in2,
        str(paths.irreps_out),
        _e3nn_instructions(paths),
        shared_weights=False,
        internal_weights=False,
        path_normalization=path_normalization,
    )
    x1 = Irreps(IRREPS).randn(9, -1, dtype=F64)
    x2 = Irreps(irreps_in2).randn(9, -1, dtype=F64)
    w = torch.randn(9, ours.weight_numel, dtype=F64)
    torch.testing.assert_close(ours(x1, x2, w), theirs(x1, x2, w), rtol=0, atol=1e-10)


def test_uvu_with_spherical_harmonics_equals_e3nn_float32(e3nn_o3):
    irreps, sh = Irreps("8x0e + 8x1o + 8x2e"), Irreps.spherical_harmonics(2)
    paths = uvu_paths(irreps, sh, irreps)
    ours = TensorProduct(irreps, sh, paths)
    theirs = e3nn_o3.TensorProduct(
        str(irreps),
        str(sh),
        str(paths.irreps_out),
        _e3nn_instructions(paths),
        shared_weights=False,
        internal_weights=False,
    )
    x1, x2 = irreps.randn(50, -1), spherical_harmonics(sh, torch.randn(50, 3), normalize=True)
    w = torch.randn(50, ours.weight_numel)
    torch.testing.assert_close(ours(x1, x2, w), theirs(x1, x2, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["uvw", "uvu", "uvv", "uuw", "uuu"])
def test_every_mode_equals_e3nn(e3nn_o3, mode):
    a = b = "2x0e + 2x1o"
    out = "2x0e + 2x1o + 2x1e"
    ins = [
        (i, j, k, mode, True)
        for i in range(2)
        for j in range(2)
        for k in range(3)
        if Irreps(out)[k].ir in Irreps(a)[i].ir * Irreps(b)[j].ir
    ]
    if mode in ("uvu", "uvv", "uuu"):
        ins.append((1, 1, 0, mode, False))  # one unweighted path
    ours = TensorProduct(a, b, instruction_paths(a, b, out, ins))
    theirs = e3nn_o3.TensorProduct(a, b, out, ins, shared_weights=False, internal_weights=False)
    x1, x2 = Irreps(a).randn(7, -1, dtype=F64), Irreps(b).randn(7, -1, dtype=F64)
    w = torch.randn(7, ours.weight_numel, dtype=F64)
    torch.testing.assert_close(ours(x1, x2, w), theirs(x1, x2, w), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "irreps_in1, irreps_out, instructions",
    [
        # 2 "uvu" paths 1o -> 1o, 1e (one block, l_out = 1) to non-adjacent terms, and a "uvw"
        # path from the same x1 term: the block's [z·p, u, k] result was filed as if [z, p, u, k]
        ("2x1o", "2x1o + 3x0e + 2x1e", [(0, 0, 0, "uvu"), (0, 1, 2, "uvu"), (0, 1, 1, "uvw")]),
        (
            "2x0e + 2x1o",
            "2x0e + 2x1o + 3x1e",
            [(0, 0, 0, "uvu"), (1, 1, 0, "uvu"), (1, 0, 1, "uvu"), (0, 1, 1, "uvu")]
            + [(1, 1, 2, "uvw"), (1, 0, 1, "uvw"), (0, 1, 1, "uvw")],
        ),
    ],
)
def test_uvu_and_uvw_paths_from_one_input_term_equal_e3nn(
    e3nn_o3, irreps_in1, irreps_out, instructions
):
    """Mixed modes on one x1 term with l > 0 and a multiplicity-1 x2 (the unfused group)."""
    irreps_in2 = "0e + 1o"
    ins = [(*i, True) for i in instructions]
    ours = TensorProduct(
        irreps_in1, irreps_in2, instruction_paths(irreps_in1, irreps_in2, irreps_out, ins)
    )
    theirs = e3nn_o3.TensorProduct(
        irreps_in1, irreps_in2, irreps_out, ins, shared_weights=False, internal_weights=False
    )
    x1 = Irreps(irreps_in1).randn(7, -1, dtype=F64)
    x2 = Irreps(irreps_in2).randn(7, -1, dtype=F64)
    w = torch.randn(7, ours.weight_numel, dtype=F64)
    torch.testing.assert_close(ours(x1, x2, w), theirs(x1, x2, w), rtol=0, atol=1e-10)


@pytest.mark.parametrize("builder", [uvu_paths, fully_connected_paths])
def test_empty_batch(builder):
    """A graph without edges gives an empty message tensor of the right width, and backward runs."""
    irreps = Irreps(IRREPS)
    irreps_in2 = Irreps("0e + 1o + 2e")
    tp = TensorProduct(irreps, irreps_in2, builder(irreps, irreps_in2, irreps))
    x1 = torch.zeros(0, irreps.dim, requires_grad=True)
    out = tp(x1, torch.zeros(0, irreps_in2.dim), torch.zeros(0, tp.weight_numel))
    out.sum().backward()
    assert out.shape == (0, tp.irreps_out.dim) and x1.grad.shape == (0, irreps.dim)
