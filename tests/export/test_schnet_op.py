"""The custom op ``euclidnn::schnet_energy_forces`` (SchNet's whole-model C kernel,
euclidnn/kernels/schnet.py ``schnet_op``): its checks on bad input (errors, never a crash) and
int32 indices. An exported SchNet file's ``energy_forces``, which calls it, is tested with the
other models' in test_traced_forces.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from ase.build import molecule

from euclidnn import kernels
from euclidnn.data import Graph
from euclidnn.models import SchNet, SchNetConfig

SPECIES = (1, 6, 8)
pytestmark = pytest.mark.skipif(
    os.environ.get("EUCLIDNN_NATIVE", "1") == "0" or not kernels.schnet_kernel_available(),
    reason="the SchNet kernel is off (EUCLIDNN_NATIVE=0 or no C compiler / BLAS)",
)


def _model() -> SchNet:
    torch.manual_seed(0)
    config = SchNetConfig(species=SPECIES, num_features=16, num_basis=8, r_max=3.5,
                          energy_shifts=(-1.0, -2.0, -3.0))  # fmt: skip
    return SchNet(config).double()


def _op_args(dtype=torch.float64):
    """A valid call of the op on ethanol (periodic shifts zero), as a dict."""
    model = _model().to(dtype)
    graph = Graph.from_ase(molecule("CH3CH2OH"), r_max=3.5, dtype=dtype)
    pair_edge, edge_pair = graph.edge_pairs()
    weights = model.kernel_weights()
    params = [*weights[:7], *(w for block in weights.interactions for w in block)]
    mu = torch.linspace(0, 3.5, 8, dtype=dtype)
    n = graph.positions.shape[0]
    return dict(positions=graph.positions, species=model.species_index(graph.numbers),
                edge_src=graph.edge_src, edge_dst=graph.edge_dst, edge_pair=edge_pair,
                pair_edge=pair_edge, edge_shift=graph.edge_shift.to(dtype), cell=graph.cell[0],
                weight=torch.ones(n, dtype=dtype), mu=mu, params=params, gamma=2.0, r_max=3.5)  # fmt: skip


def bad_calls() -> dict[str, dict]:
    """Invalid calls of the op (each a changed copy of :func:`_op_args`), shared with the C++
    test (tests/export/test_ops_cpp.py)."""
    base = _op_args()
    n = base["positions"].shape[0]

    def changed(**kw):
        return {**base, **kw}

    swapped = base["pair_edge"].clone()
    swapped[[0, 1]] = swapped[[1, 0]]
    return {
        "float32 positions": changed(positions=base["positions"].float()),
        "positions [N, 2]": changed(positions=base["positions"][:, :2]),
        "float species": changed(species=base["species"].double()),
        "species out of range": changed(species=base["species"] + 5),
        "src out of range": changed(edge_src=base["edge_src"] + n),
        "dst negative": changed(edge_dst=base["edge_dst"] - n),
        "pair out of range": changed(edge_pair=base["edge_pair"] + 1000),
        "pair_edge out of range": changed(pair_edge=base["pair_edge"] + 10000),
        "pairs not the edges' own": changed(pair_edge=swapped),
        "weight [N + 1]": changed(weight=torch.ones(n + 1, dtype=torch.float64)),
        "float32 weight": changed(weight=base["weight"].float()),
        "cell [3]": changed(cell=torch.zeros(3, dtype=torch.float64)),
        "shift [E, 2]": changed(edge_shift=base["edge_shift"][:, :2]),
        "too few params": changed(params=base["params"][:10]),
        "a param of the wrong shape": changed(params=[base["params"][0].T, *base["params"][1:]]),
        "float32 params": changed(params=[p.float() for p in base["params"]]),
        "mu of the wrong length": changed(mu=base["mu"][:5]),
    }


def run_bad_calls() -> dict[str, str]:
    answers = {}
    for name, kwargs in bad_calls().items():
        try:
            torch.ops.euclidnn.schnet_energy_forces(*kwargs.values())
            answers[name] = "no error"
        except (ValueError, TypeError, IndexError, RuntimeError) as err:
            answers[name] = type(err).__name__
    return answers


def test_the_op_refuses_bad_input_without_crashing():
    """Every bad call in a subprocess: it exits normally, each raising a Python error."""
    script = textwrap.dedent(
        f"""
        import importlib.util, json, torch
        import euclidnn.export
        spec = importlib.util.spec_from_file_location("cases", {__file__!r})
        cases = importlib.util.module_from_spec(spec); spec.loader.exec_module(cases)
        print(json.dumps(cases.run_bad_calls()))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    answers = json.loads(run.stdout.strip().splitlines()[-1])
    assert "no error" not in answers.values(), answers
    assert answers["src out of range"] == answers["species out of range"] == "IndexError"
    assert answers["float species"] == "TypeError"
    assert answers["pairs not the edges' own"] == "ValueError"


def test_int32_indices_answer_as_int64():
    base = _op_args()
    want = torch.ops.euclidnn.schnet_energy_forces(*base.values())
    int32 = {k: v.int() if k in ("species", "edge_src", "edge_dst", "edge_pair", "pair_edge")
             else v for k, v in base.items()}  # fmt: skip
    for got, w in zip(torch.ops.euclidnn.schnet_energy_forces(*int32.values()), want):
        torch.testing.assert_close(got, w, rtol=0, atol=0)
