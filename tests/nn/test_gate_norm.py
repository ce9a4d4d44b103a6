"""Gate, NormActivation, EquivariantLayerNorm: equivariance, normalization, e3nn agreement."""

import pytest
import torch

from euclidnn.nn import EquivariantLayerNorm, Gate, NormActivation, normalize2mom
from euclidnn.o3 import Irreps
from euclidnn.testing import assert_equivariant, assert_normalized

F = torch.nn.functional
F64 = torch.float64


def _gate():
    return Gate(
        "8x0e + 2x0o",
        [F.silu, torch.tanh],
        "3x0e + 1x0o",
        [torch.sigmoid, torch.tanh],
        "2x1o + 1x2e + 1x1e",
    )


def test_gate_irreps_and_equivariance():
    gate = _gate()
    # an odd gate (tanh of a 0o) flips the parity of the irrep it multiplies: 1e -> 1o
    assert str(gate.irreps_out) == "8x0e+2x0o+2x1o+1x2e+1x1o"
    assert_equivariant(gate, tolerance=1e-10)


def test_gate_rejects_bad_inputs():
    with pytest.raises(ValueError, match="gates for"):
        Gate("4x0e", [F.silu], "2x0e", [torch.sigmoid], "3x1o")
    with pytest.raises(ValueError, match="even or odd"):
        Gate("2x0o", [F.silu], "", [], "")


def test_gate_normalized():
    gate = Gate("64x0e", [F.silu], "32x0e", [torch.sigmoid], "16x1o + 16x2e")
    assert_normalized(gate, rtol=0.1)


def test_gate_equals_e3nn(e3nn_nn):
    """Same input layout when scalars + gates + gated is already sorted (e3nn sorts its input
    irreps; we keep the three blocks in the order given). e3nn's normalize2mom constant is a
    Monte-Carlo estimate, ours is exact quadrature: outputs agree after the ratio of constants."""
    from e3nn.math import normalize2mom as e3nn_normalize2mom

    args = ("8x0e", [F.silu], "3x0e", [torch.sigmoid], "2x1o + 1x1e")
    ours, theirs = Gate(*args), e3nn_nn.Gate(*args)
    assert str(ours.irreps_out) == str(theirs.irreps_out)
    x = Irreps(ours.irreps_in).randn(7, -1, dtype=F64)
    a, b = ours(x), theirs(x)
    ratio_scalars = normalize2mom(F.silu).cst / e3nn_normalize2mom(F.silu).cst
    ratio_gates = normalize2mom(torch.sigmoid).cst / e3nn_normalize2mom(torch.sigmoid).cst
    assert abs(ratio_scalars - 1) < 5e-3 and abs(ratio_gates - 1) < 5e-3
    torch.testing.assert_close(a[:, :8], b[:, :8] * ratio_scalars, rtol=0, atol=1e-10)
    torch.testing.assert_close(a[:, 8:], b[:, 8:] * ratio_gates, rtol=0, atol=1e-10)


def test_norm_activation():
    act = NormActivation("3x0e + 2x0o + 2x1o + 1x2e", torch.sigmoid)
    assert_equivariant(act, tolerance=1e-10)
    x = torch.randn(5, 3, dtype=F64)
    y = NormActivation("1o", torch.sigmoid, epsilon=0.0)(x)
    norm = x.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(y, x / norm * torch.sigmoid(norm))


def test_layer_norm():
    irreps = "8x0e + 4x1o + 4x2e + 2x0o"
    norm = EquivariantLayerNorm(irreps)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    assert_equivariant(norm, tolerance=1e-10)
    plain = EquivariantLayerNorm(irreps).to(F64)
    x = 5.0 * Irreps(irreps).randn(100, -1, dtype=F64) + 3.0
    y = plain(x)
    for (_mul, ir), sl in zip(Irreps(irreps), Irreps(irreps).slices()):
        centred = x[:, sl] - x[:, sl].mean(-1, keepdim=True) if ir.l == 0 else x[:, sl]
        moment = centred.pow(2).mean(-1)  # unit second moment up to the ε regulariser
        torch.testing.assert_close(
            y[:, sl].pow(2).mean(-1), moment / (moment + plain.epsilon), rtol=1e-12, atol=0
        )
        if ir.l == 0:
            torch.testing.assert_close(
                y[:, sl].mean(-1), torch.zeros(100, dtype=F64), rtol=0, atol=1e-12
            )


@pytest.mark.parametrize(
    "make",
    [_gate, lambda: NormActivation("4x0e + 2x1o"), lambda: EquivariantLayerNorm("4x0e + 2x1o")],
)
def test_compiles_without_graph_breaks(make):
    module = make()
    x = torch.randn(6, module.irreps_in.dim)
    torch.testing.assert_close(torch.compile(module, fullgraph=True, backend="eager")(x), module(x))
