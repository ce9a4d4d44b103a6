"""The three routes to symmetric tensor predictions of examples/tensor_properties: an augmented
MLP is measurably not equivariant; the invariant model and TensorHead are, to 1e-10 (float64)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from euclidnn.data import Graph, read
from euclidnn.models import NequIP, NequIPConfig, TensorHead, symmetric_matrix
from euclidnn.o3 import rand_matrix

EXAMPLE = Path(__file__).parents[2] / "examples" / "tensor_properties"


def load_baselines():
    spec = importlib.util.spec_from_file_location("baselines", EXAMPLE / "baselines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def frames():
    structures = read(EXAMPLE / "data" / "NH3-hf-def2svp.xyz.gz")[:24]
    assert structures[0].properties["dipole"].shape == (3,)
    return structures


def centred(structure):
    return torch.tensor(structure.positions - structure.positions.mean(0))


def test_augmented_mlp_is_not_equivariant_but_the_others_are(frames):
    b = load_baselines()
    rotations = rand_matrix(len(frames), 10, dtype=torch.float64)
    rotations[:, 0] = torch.eye(3, dtype=torch.float64)
    positions = torch.stack(
        [b.rotate(centred(s), r) for s, rs in zip(frames, rotations) for r in rs]
    )
    positions = torch.nn.functional.pad(positions, (0, 0, 0, b.MAX_ATOMS - 4))
    species = b.one_hot(frames[0].numbers).expand(len(positions), -1, -1)
    species = torch.nn.functional.pad(species, (0, 0, 0, b.MAX_ATOMS - 4))
    dipoles = torch.stack(
        [torch.tensor(s.properties["dipole"]) @ r.T for s, rs in zip(frames, rotations) for r in rs]
    )
    mlp = b.CoordinateMLP(tensor=False).double()
    b.adam_fit(mlp, lambda m, i: (m(positions[i], species[i]) - dipoles[i]).pow(2).mean(), 240, 200)
    invariant = b.InvariantModel(tensor=True).double()
    trunk = NequIP(NequIPConfig(species=(1, 7), num_features=4, num_layers=2, lmax=2, r_max=4.0))
    heads = [TensorHead(trunk, "1o").double(), TensorHead(trunk, "0e + 2e").double()]

    def mlp_of(x):
        padded = torch.nn.functional.pad(x, (0, 0, 0, b.MAX_ATOMS - 4))[None]
        return mlp(padded, species[:1])[0]

    def invariant_of(x):
        features = b.descriptors(x.numpy(), frames[0].numbers)
        return invariant(features, x, torch.zeros(4, dtype=torch.int64), 1)[0]

    def head_of(head):
        def predict(x):
            graph = Graph.from_structure(frames[0], 4.0, torch.float64)
            y = head(graph.deformed(x, torch.zeros_like(graph.cell)))[0]
            return symmetric_matrix(y) if y.shape[-1] == 6 else y

        return predict

    errors = {}
    rotation = rand_matrix(dtype=torch.float64)
    for name, f in [("mlp", mlp_of), ("invariant", invariant_of)] + [
        (f"head {h.irreps_out}", head_of(h)) for h in heads
    ]:
        x = centred(frames[5])
        with torch.no_grad():
            errors[name] = float((f(x @ rotation.T) - b.rotate(f(x), rotation)).abs().max())
    assert errors["mlp"] > 1e-3  # rotated copies teach approximate, never exact, equivariance
    assert errors["invariant"] < 1e-10
    assert errors["head 1x1o"] < 1e-10 and errors["head 1x0e+1x2e"] < 1e-10


@pytest.mark.slow
def test_compare_runs_end_to_end(tmp_path):
    command = [sys.executable, str(EXAMPLE / "compare.py"), "--quick", "--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, timeout=1200)
    table = (tmp_path / "results.md").read_text()
    assert "TensorHead 1o" in table and "MLP ×10" in table and "invariant" in table
    assert (tmp_path / "tensor_properties.png").stat().st_size > 10_000
