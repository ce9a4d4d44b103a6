"""OpenMP's wait policy: the command line sets it before torch loads, the library never does.

Each check runs in a fresh interpreter: OpenMP reads its environment once, when torch loads
it, and this test process has long since imported torch (and other tests call the CLI's
``main`` in-process, which sets the policy in ``os.environ``).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import euclidnn
from euclidnn.cli.__main__ import OPENMP_WAIT_VARIABLES, set_openmp_defaults

ROOT = Path(euclidnn.__file__).resolve().parents[1]  # the tree these tests import


def python(code_or_args: list[str], **environ: str) -> subprocess.CompletedProcess:
    """Run this Python on ``code_or_args`` with the OpenMP wait variables removed from the
    environment, then ``environ`` added; this tree's package first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_WAIT_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(environ)
    return subprocess.run(
        [sys.executable, *code_or_args], env=env, capture_output=True, text=True, timeout=120
    )


def test_import_euclidnn_changes_no_environment_and_loads_no_torch():
    code = """
import os, sys
before = dict(os.environ)
import euclidnn
assert "torch" not in sys.modules, "import euclidnn loaded torch"
from euclidnn import Graph, Irreps, NequIP, SchNet, predict
assert Irreps("1o").dim == 3 and "torch" in sys.modules
assert dict(os.environ) == before, "importing the library changed the environment"
"""
    result = python(["-c", code])
    assert result.returncode == 0, result.stderr


def test_cli_sets_its_wait_policy_before_torch_is_imported():
    code = """
import os, runpy, sys
import euclidnn.cli.__main__
assert "torch" not in sys.modules, "importing the CLI loaded torch"
sys.argv = ["euclidnn", "--help"]
try:
    runpy.run_module("euclidnn", run_name="__main__")
except SystemExit:
    pass
assert "torch" in sys.modules
print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"))
"""
    result = python(["-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "PASSIVE 1000"
    kept = python(["-c", code], OMP_WAIT_POLICY="ACTIVE")
    assert kept.stdout.splitlines()[-1] == "ACTIVE None"


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, ["OMP_WAIT_POLICY = 'PASSIVE'", "GOMP_SPINCOUNT = '1000'"]),  # the default
        ({"OMP_WAIT_POLICY": "ACTIVE"}, ["OMP_WAIT_POLICY = 'ACTIVE'"]),  # the user's wins
        ({"GOMP_SPINCOUNT": "1234"}, ["GOMP_SPINCOUNT = '1234'"]),
    ],
)
def test_openmp_runtime_sees_the_policy(environ, expected):
    """What libgomp itself read when torch loaded it (``OMP_DISPLAY_ENV``), through
    ``python -m euclidnn train --help``; skipped where PyTorch's OpenMP is not libgomp."""
    result = python(["-m", "euclidnn", "train", "--help"], OMP_DISPLAY_ENV="VERBOSE", **environ)
    assert result.returncode == 0, result.stderr
    assert "usage: euclidnn train" in result.stdout
    if "GOMP_SPINCOUNT = " not in result.stderr:
        pytest.skip("PyTorch's OpenMP runtime here is not GNU libgomp")
    for line in expected:
        assert line in result.stderr


@pytest.mark.parametrize("name", OPENMP_WAIT_VARIABLES)
def test_a_users_wait_setting_is_kept_whole(name):
    environ = {name: "7"}
    set_openmp_defaults(environ)
    assert environ == {name: "7"}  # no policy added beside the user's own choice


def test_top_level_names_are_the_same_and_resolve():
    assert euclidnn.__all__ == [
        "Graph",
        "Irrep",
        "Irreps",
        "NequIP",
        "NequIPConfig",
        "Prediction",
        "SchNet",
        "SchNetConfig",
        "Structure",
        "Targets",
        "predict",
        "read",
    ]
    from euclidnn.models import SchNet

    assert euclidnn.SchNet is SchNet
    assert euclidnn.models.SchNet is SchNet  # subpackages as attributes, as before
    assert set(euclidnn.__all__) <= set(dir(euclidnn))
    for name in euclidnn.__all__:
        assert getattr(euclidnn, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        euclidnn.nothing  # noqa: B018
