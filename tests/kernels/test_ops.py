"""The custom op ``euclidnn::uvu_conv`` (euclidnn/kernels/ops.py): the convolution and its
derivatives equal the PyTorch reference (value, gradient, second derivative); odd inputs (no
edges, int32 indices, strided tensors) work; bad ones raise a Python error naming the problem
(checked in a subprocess as well, so that a crash fails the test instead of killing the suite).

:func:`op_cases` is shared with tests/export/test_ops_cpp.py, which runs the same cases
through the C++ registration of the op compiled into the LAMMPS plugin.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from euclidnn import kernels
from euclidnn.kernels import ops
from euclidnn.o3 import Irreps, TensorProduct, uvu_paths

pytestmark = pytest.mark.skipif(
    kernels.conv.LIBRARY.get() is None, reason="no C compiler: the kernels are not built"
)

IRREPS = Irreps("3x0e + 2x1o + 1x2e")
SH = Irreps.spherical_harmonics(2)


def _tensor_product() -> TensorProduct:
    return TensorProduct(IRREPS, SH, uvu_paths(IRREPS, SH, IRREPS))


def _problem(num_nodes=5, num_edges=11, dtype=torch.float64, seed=0):
    """A convolution's inputs (e3nn layout, weights per edge) and its op arguments."""
    g = torch.Generator().manual_seed(seed)
    tp = _tensor_product()
    x = torch.randn(num_nodes, IRREPS.dim, dtype=dtype, generator=g)
    y = torch.randn(num_edges, SH.dim, dtype=dtype, generator=g)
    w = torch.randn(num_edges, tp.weight_numel, dtype=dtype, generator=g)
    src = torch.randint(0, max(num_nodes, 1), (num_edges,), generator=g)
    dst = torch.randint(0, max(num_nodes, 1), (num_edges,), generator=g)
    return tp, x, y, w, src, dst


def _op(spec, x, y, w, src, dst, num_nodes, row=None, slot=3, g=None, num_out=None):
    """The op at ``slot`` on e3nn-layout x (permuted into the kernel's layout)."""
    xk = None if x is None else x.index_select(1, spec.perm_in)
    n = torch.tensor(num_nodes if num_out is None else num_out)
    return torch.ops.euclidnn.uvu_conv(
        slot, xk, y, w, g, src, dst, row, n, spec.entries,
        spec.coefficients[torch.float64], list(spec.dims),
    )  # fmt: skip


def _reference(tp, x, y, w, src, dst, num_nodes):
    messages = tp.contraction(x.index_select(0, src), y, w)  # plain PyTorch
    return messages.new_zeros(num_nodes, messages.shape[1]).index_add_(0, dst, messages)


@pytest.fixture(autouse=True)
def _registered():
    ops.register()


def test_value_gradient_and_second_derivative_equal_the_reference():
    tp, x, y, w, src, dst = _problem()
    spec = tp.conv_spec
    inputs = [t.clone().requires_grad_() for t in (x, y, w)]
    got = _op(spec, *inputs, src, dst, 5).index_select(1, spec.perm_out)
    want = _reference(tp, *inputs, src, dst, 5)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    probe = torch.randn_like(want)
    grads = torch.autograd.grad((got * probe).sum(), inputs, create_graph=True)
    expected = torch.autograd.grad((want * probe).sum(), inputs, create_graph=True)
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # a second derivative (what training on forces needs): the op's backward is the op again
    second = torch.autograd.grad(sum((g**2).sum() for g in grads), inputs)
    second_want = torch.autograd.grad(sum((g**2).sum() for g in expected), inputs)
    for a, b in zip(second, second_want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_op_equals_the_eager_kernel_bit_for_bit():
    """The op runs the same C call as eager :func:`euclidnn.kernels.convolve`."""
    tp, x, y, w, src, dst = _problem(dtype=torch.float32)
    eager = kernels.convolve(tp.conv_spec, x, y, w, src, dst, 5, reference=lambda: None)
    got = _op(tp.conv_spec, x, y, w, src, dst, 5).index_select(1, tp.conv_spec.perm_out)
    assert torch.equal(got, eager)


def test_no_edges_and_no_nodes():
    tp, x, y, w, src, dst = _problem(num_edges=0)
    spec = tp.conv_spec
    x.requires_grad_()
    out = _op(spec, x, y, w, src, dst, 5)
    assert out.shape == (5, spec.dims[3]) and not out.any()
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.shape == x.shape and not grad.any()
    tp, x, y, w, src, dst = _problem(num_nodes=0, num_edges=0)
    assert _op(spec, x, y, w, src, dst, 0).shape == (0, spec.dims[3])


def test_int32_and_strided_inputs_give_the_same_result():
    tp, x, y, w, src, dst = _problem()
    spec = tp.conv_spec
    want = _op(spec, x, y, w, src, dst, 5)
    assert torch.equal(_op(spec, x, y, w, src.int(), dst.int(), 5), want)
    wide = torch.cat([w, w], 1)[:, ::2] * 0 + w  # a strided view of the same values
    strided_y = torch.stack([y, y], 2)[:, :, 0]
    assert not strided_y.is_contiguous()
    assert torch.equal(_op(spec, x, strided_y, wide, src, dst, 5), want)


def test_shared_filter_rows_and_y_of_one():
    """SchNet's continuous filter: y ≡ 1 (None) and edges reading rows of w."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(3, 6, dtype=torch.float64, generator=g, requires_grad=True)
    src, dst = torch.tensor([0, 1, 2, 3, 1]), torch.tensor([1, 0, 3, 2, 2])
    row = torch.tensor([0, 0, 1, 1, 2])
    spec = kernels.ConvSpec.product(6)
    out = torch.ops.euclidnn.uvu_conv(
        3, x, None, w, None, src, dst, row, torch.tensor(4), spec.entries,
        spec.coefficients[torch.float64], list(spec.dims),
    )  # fmt: skip
    want = torch.zeros(4, 6, dtype=torch.float64).index_add(0, dst, x[src] * w[row])
    torch.testing.assert_close(out, want, rtol=0, atol=1e-14)
    for a, b in zip(
        torch.autograd.grad(out.pow(2).sum(), (x, w)),
        torch.autograd.grad(want.pow(2).sum(), (x, w)),
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def op_cases() -> list[tuple[str, dict]]:
    """Named op calls (keyword arguments of ``uvu_conv``), valid and invalid, deterministic:
    what both registrations must answer alike (a result, or the same kind of error)."""
    tp, x, y, w, src, dst = _problem()
    spec = tp.conv_spec
    base = dict(
        slot=3, x=x.index_select(1, spec.perm_in), y=y, w=w, g=None, edge_src=src,
        edge_dst=dst, row=None, num_out=torch.tensor(5), entries=spec.entries,
        coefficients=spec.coefficients[torch.float64], dims=list(spec.dims),
    )  # fmt: skip
    g = torch.randn(
        5, spec.dims[3], dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    bad_entries = spec.entries.clone()
    bad_entries[0, 4] = 1000
    return [
        ("forward", base),
        ("x slot", {**base, "slot": 0, "x": None, "g": g}),
        ("y slot", {**base, "slot": 1, "y": None, "g": g, "num_out": torch.tensor(11)}),
        ("w slot", {**base, "slot": 2, "w": None, "g": g, "num_out": torch.tensor(11)}),
        ("float32", {**base, "x": base["x"].float(), "y": y.float(), "w": w.float()}),
        ("no edges", {**base, "y": y[:0], "w": w[:0], "edge_src": src[:0], "edge_dst": dst[:0]}),
        ("int32 indices", {**base, "edge_src": src.int(), "edge_dst": dst.int()}),
        ("float indices", {**base, "edge_src": src.double()}),
        ("src out of range", {**base, "edge_src": src.clone().fill_(5)}),
        ("dst negative", {**base, "edge_dst": dst.clone().fill_(-1)}),
        ("dst beyond num_out", {**base, "num_out": torch.tensor(2)}),
        ("edge counts differ", {**base, "edge_dst": dst[:-1]}),
        ("2-d indices", {**base, "edge_src": src.reshape(1, -1)}),
        ("y rows", {**base, "y": y[:-1]}),
        ("w width", {**base, "w": w[:, :-1]}),
        ("mixed dtypes", {**base, "y": y.float()}),
        ("integer features", {**base, "x": base["x"].long()}),
        ("1-d g", {**base, "slot": 0, "x": None, "g": g[0]}),
        ("0-d x", {**base, "x": x[0, 0]}),
        ("entry outside", {**base, "entries": bad_entries}),
        ("entries shape", {**base, "entries": spec.entries[:, :4]}),
        ("coefficient count", {**base, "coefficients": base["coefficients"][:-1]}),
        ("negative num_out", {**base, "num_out": torch.tensor(-1)}),
        ("slot given", {**base, "g": g}),
        ("bad slot", {**base, "slot": 7}),
        ("x missing", {**base, "x": None}),
        ("dims", {**base, "dims": [1, 2, 3]}),
    ]


def run_cases(cases) -> dict[str, object]:
    """Each case's result tensor, or the name of the exception it raised."""
    answers = {}
    for name, kwargs in cases:
        try:
            answers[name] = torch.ops.euclidnn.uvu_conv(*kwargs.values())
        except (ValueError, TypeError, IndexError, RuntimeError) as err:
            answers[name] = type(err).__name__
    return answers


EXPECTED_ERRORS = {
    "float indices": "TypeError",
    "src out of range": "IndexError",
    "dst negative": "IndexError",
    "dst beyond num_out": "IndexError",
}


def test_odd_inputs_answer_or_raise_never_crash():
    """Every case in a subprocess: it exits normally; valid cases give the reference's
    numbers, invalid ones a ValueError, TypeError or IndexError (as PyTorch's indexing)."""
    script = textwrap.dedent(
        f"""
        import importlib.util, torch
        spec = importlib.util.spec_from_file_location("cases", {str(Path(__file__))!r})
        cases = importlib.util.module_from_spec(spec); spec.loader.exec_module(cases)
        from euclidnn.kernels import ops
        ops.register()
        answers = cases.run_cases(cases.op_cases())
        print({{k: v if isinstance(v, str) else "ok" for k, v in answers.items()}})
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    answers = eval(run.stdout.strip().splitlines()[-1])  # noqa: S307 (our own printed dict)
    valid = {"forward", "x slot", "y slot", "w slot", "float32", "no edges", "int32 indices"}
    for name, answer in answers.items():
        if name in valid:
            assert answer == "ok", name
        else:
            assert answer == EXPECTED_ERRORS.get(name, "ValueError"), (name, answer)
    here = run_cases(op_cases())
    torch.testing.assert_close(
        here["int32 indices"], here["forward"], rtol=0, atol=0
    )  # converted, not misread
    assert not here["no edges"].any()
