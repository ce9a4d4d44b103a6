"""The C++ registrations of ``euclidnn::uvu_conv`` and ``euclidnn::schnet_energy_forces`` (euclidnn/export/euclidnn_ops.cpp, what the
LAMMPS plugin runs) against the Python one (euclidnn/kernels/ops.py): the same answers on the
same valid and invalid calls (tests/kernels/test_ops.py's cases), and first and second
derivatives equal to the PyTorch reference.

The C++ file and ``_conv.c`` are compiled into a small library without LAMMPS (as the plugin
build does) and loaded into a subprocess that never registers the Python op; a crash there
fails the test. Slow: the compile takes about a minute.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from euclidnn.export import load_exported

lammps = pytest.importorskip("euclidnn.export.lammps")

pytestmark = pytest.mark.slow
CASES_FILE = Path(__file__).parents[1] / "kernels" / "test_ops.py"
SCHNET_CASES_FILE = Path(__file__).with_name("test_schnet_op.py")
FILE_CASES_FILE = Path(__file__).with_name("test_traced_forces.py")  # (_periodic, _inputs)


def _cases_module():
    spec = importlib.util.spec_from_file_location("op_cases", CASES_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ops_library(tmp_path_factory) -> Path:
    try:
        install = lammps.find_lammps()
    except lammps.LammpsMissing as missing:
        pytest.skip(str(missing))
    tmp = tmp_path_factory.mktemp("ops_cpp")
    library = tmp / "euclidnn_ops.so"
    sources = [lammps.OPS_SOURCE, lammps.SCHNET_OP_SOURCE]
    lammps.compile_ops(install, sources, library, lammps._flags(install))
    return library


def test_cpp_op_answers_as_the_python_op(ops_library, tmp_path):
    out = tmp_path / "answers.pt"
    script = textwrap.dedent(
        f"""
        import importlib.util, torch
        torch.ops.load_library({str(ops_library)!r})
        spec = importlib.util.spec_from_file_location("cases", {str(CASES_FILE)!r})
        cases = importlib.util.module_from_spec(spec); spec.loader.exec_module(cases)
        from euclidnn.kernels import ops
        assert ops.available(ops.CONV_OP)  # the C++ registration, not the Python one

        answers = cases.run_cases(cases.op_cases())
        tp, x, y, w, src, dst = cases._problem()
        inputs = [t.clone().requires_grad_() for t in (x, y, w)]
        out = cases._op(tp.conv_spec, *inputs, src, dst, 5)
        probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
        grads = torch.autograd.grad((out * probe).sum(), inputs, create_graph=True)
        second = torch.autograd.grad(sum((g ** 2).sum() for g in grads), inputs)
        answers["grads"] = [g.detach() for g in grads]
        answers["second"] = list(second)
        torch.save(answers, {str(out)!r})
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    cpp = torch.load(out)

    cases = _cases_module()
    from euclidnn.kernels import ops

    ops.register()
    python = cases.run_cases(cases.op_cases())
    for name, want in python.items():
        got = cpp[name]
        if isinstance(want, str):
            assert got == want, (name, got, want)
        else:
            assert isinstance(got, torch.Tensor), (name, got)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12, msg=name)

    # derivatives through the C++ autograd function, against the PyTorch reference
    tp, x, y, w, src, dst = cases._problem()
    inputs = [t.clone().requires_grad_() for t in (x, y, w)]
    reference = cases._reference(tp, *inputs, src, dst, 5)
    reference = reference.index_select(1, tp.conv_spec.perm_out.argsort())  # kernel layout
    probe = torch.linspace(-1, 1, reference.numel(), dtype=reference.dtype)
    grads = torch.autograd.grad(
        (reference * probe.reshape(reference.shape)).sum(), inputs, create_graph=True
    )
    second = torch.autograd.grad(sum((g**2).sum() for g in grads), inputs)
    for got, want in zip(cpp["grads"] + cpp["second"], list(grads) + list(second)):
        torch.testing.assert_close(got, want.detach(), rtol=0, atol=1e-10)


def test_cpp_schnet_op_answers_as_the_python_op(ops_library, tmp_path):
    """euclidnn/export/schnet_op.cpp against euclidnn/kernels/schnet.py's ``schnet_op``: the
    same numbers on a valid call (float64 and float32) and on an exported file's
    energy_forces, the same error class on every bad call of tests/export/test_schnet_op.py."""
    from euclidnn.export import export

    spec = importlib.util.spec_from_file_location("schnet_cases", SCHNET_CASES_FILE)
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    spec = importlib.util.spec_from_file_location("file_cases", FILE_CASES_FILE)
    files = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(files)
    export(cases._model(), tmp_path / "model.pt")
    out = tmp_path / "answers.pt"
    script = textwrap.dedent(
        f"""
        import importlib.util, torch
        torch.ops.load_library({str(ops_library)!r})
        from euclidnn.kernels import ops
        assert ops.available(ops.SCHNET_OP)  # the C++ registration, not the Python one
        import euclidnn.export
        spec = importlib.util.spec_from_file_location("cases", {str(SCHNET_CASES_FILE)!r})
        cases = importlib.util.module_from_spec(spec); spec.loader.exec_module(cases)
        spec = importlib.util.spec_from_file_location("files", {str(FILE_CASES_FILE)!r})
        files = importlib.util.module_from_spec(spec); spec.loader.exec_module(files)
        answers = {{"bad": cases.run_bad_calls()}}
        for dtype in (torch.float64, torch.float32):
            args = cases._op_args(dtype)
            args["weight"] = (torch.arange(args["weight"].shape[0]) % 2).to(dtype)
            answers[str(dtype)] = torch.ops.euclidnn.schnet_energy_forces(*args.values())
        module, _ = euclidnn.export.load_exported({str(tmp_path / "model.pt")!r})
        graph = cases.Graph.from_ase(files._periodic(), 3.5, torch.float64)
        answers["file"] = module.energy_forces(*files._inputs(graph, torch.float64))
        torch.save(answers, {str(out)!r})
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    cpp = torch.load(out)
    assert cpp["bad"] == cases.run_bad_calls()
    for dtype in (torch.float64, torch.float32):
        args = cases._op_args(dtype)
        args["weight"] = (torch.arange(args["weight"].shape[0]) % 2).to(dtype)
        want = torch.ops.euclidnn.schnet_energy_forces(*args.values())
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        for got, w in zip(cpp[str(dtype)], want):
            torch.testing.assert_close(got, w, rtol=0, atol=tol)
    module, _ = load_exported(tmp_path / "model.pt")
    graph = cases.Graph.from_ase(files._periodic(), 3.5, torch.float64)
    for got, w in zip(cpp["file"], module.energy_forces(*files._inputs(graph, torch.float64))):
        torch.testing.assert_close(got, w, rtol=0, atol=1e-12)
