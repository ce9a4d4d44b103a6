"""Dipoles (1o) and polarizabilities (0e + 2e) by the three routes to symmetry: rotated copies
of the data, invariant inputs, an equivariant model. Test MAE vs N and equivariance error.

Run: OMP_NUM_THREADS=1 python examples/tensor_properties/compare.py [--quick]
Data: data/*.xyz.gz, labelled by `euclidnn label --properties dipole,polarizability` (README).
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from euclidnn.cli.config_io import new_model
from euclidnn.data import Graph, read
from euclidnn.models import load_model, symmetric_matrix
from euclidnn.o3 import rand_matrix
from euclidnn.train import TrainConfig, data_statistics, fit

sys.path.insert(0, str(Path(__file__).parent))
from baselines import (  # noqa: E402
    MAX_ATOMS,
    CoordinateMLP,
    InvariantModel,
    adam_fit,
    descriptors,
    one_hot,
    rotate,
)  # fmt: skip

HERE = Path(__file__).parent
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
parser.add_argument("--copies", type=int, nargs="+", default=[1, 10, 100, 500])
parser.add_argument("--steps", type=int, default=3000, help="Adam steps of each baseline")
parser.add_argument("--minutes", type=float, default=1.5, help="budget of each TensorHead fit")
parser.add_argument("--quick", action="store_true", help="tiny settings, for a smoke test")
parser.add_argument("--out", default="runs/tensor-properties")
args = parser.parse_args()
if args.quick:
    args.sizes, args.copies, args.steps, args.minutes = [10, 20], [1, 10], 50, 0.05
torch.set_num_threads(1)
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

frames = [s for path in sorted((HERE / "data").glob("*.xyz.gz")) for s in read(path)]
order = np.random.default_rng(0).permutation(len(frames))
n_test, n_valid = len(frames) // 5, len(frames) // 10  # 80 and 40 of the 400 frames
test, valid, pool = order[:n_test], order[n_test : n_test + n_valid], order[n_test + n_valid :]
rotations = rand_matrix(
    len(frames), dtype=torch.float64, generator=torch.Generator().manual_seed(1)
)
centred = [torch.tensor(s.positions - s.positions.mean(0)) for s in frames]
features = [descriptors(c.numpy(), s.numbers) for c, s in zip(centred, frames)]


def target(i, name, rotation=None):
    y = torch.tensor(frames[i].properties[name], dtype=torch.float64)
    return y if rotation is None else rotate(y, rotation)


def padded(indices, rotation_of):
    """Coordinates and species of frames (rotated by rotation_of(i)), zero-padded."""
    positions = torch.zeros(len(indices), MAX_ATOMS, 3, dtype=torch.float64)
    species = torch.zeros(len(indices), MAX_ATOMS, 5, dtype=torch.float64)
    for row, i in enumerate(indices):
        n = len(frames[i].numbers)
        positions[row, :n] = centred[i] @ rotation_of(i).T
        species[row, :n] = one_hot(frames[i].numbers)
    return positions, species


def invariant_inputs(indices, rotation_of):
    molecule = torch.cat([torch.full((len(frames[i].numbers),), k) for k, i in enumerate(indices)])
    rotated = torch.cat([centred[i] @ rotation_of(i).T for i in indices])
    return torch.cat([features[i] for i in indices]), rotated, molecule, len(indices)


def graph_predict(model, indices, rotation_of):
    graph = Graph.from_structures(
        [replace(frames[i], positions=(centred[i] @ rotation_of(i).T).numpy()) for i in indices],
        model.trunk.config.r_max,
        torch.float64,
    )
    with torch.no_grad():
        y = model.double()(graph)
    return symmetric_matrix(y) if y.shape[-1] == 6 else y


def evaluate(predict, name):
    """(test MAE on randomly rotated test frames, equivariance error): mean |component| error;
    mean |f(R x) − R f(x)| over the test frames, each with its own random rotation."""
    identity = torch.eye(3, dtype=torch.float64)
    rotated = predict(test, lambda i: rotations[i])
    reference = torch.stack([target(i, name, rotations[i]) for i in test])
    plain = predict(test, lambda i: identity)
    expected = torch.stack([rotate(y, rotations[i]) for y, i in zip(plain, test)])
    return float((rotated - reference).abs().mean()), float((rotated - expected).abs().mean())


def run_mlp(name, train, copies):
    """The raw-coordinate MLP on the frames as sampled plus copies − 1 rotated copies each."""
    generator = torch.Generator().manual_seed(len(train))
    extra = rand_matrix(len(train), copies, dtype=torch.float64, generator=generator)
    extra[:, 0] = torch.eye(3, dtype=torch.float64)
    samples = [(i, extra[k, c]) for k, i in enumerate(train) for c in range(copies)]
    positions, species = padded(
        [i for i, _ in samples], lambda i: torch.eye(3, dtype=torch.float64)
    )
    positions = torch.einsum("bij,baj->bai", torch.stack([r for _, r in samples]), positions)
    y = torch.stack([target(i, name, r) for i, r in samples])
    mlp = CoordinateMLP(name == "polarizability").double()
    loss = lambda m, b: (m(positions[b], species[b]) - y[b]).pow(2).mean()  # noqa: E731
    adam_fit(mlp, loss, len(samples), args.steps)
    return evaluate(lambda idx, rot: mlp(*padded(idx, rot)).detach(), name)


def run_invariant(name, train):
    invariant = InvariantModel(name == "polarizability").double()
    y = torch.stack([target(i, name) for i in train])
    identity = lambda i: torch.eye(3, dtype=torch.float64)  # noqa: E731
    loss = lambda m, b: (m(*invariant_inputs(train[b.numpy()], identity)) - y[b]).pow(2).mean()  # noqa: E731
    adam_fit(invariant, loss, len(train), args.steps)
    return evaluate(lambda idx, rot: invariant(*invariant_inputs(idx, rot)).detach(), name)


def run_tensorhead(name, head, train):
    """euclidnn's TensorHead on a NequIP trunk, trained by euclidnn.train.fit (no rotations)."""
    config = TrainConfig.from_dict({
        "model": {"head": head, "settings": {"num_features": 8, "num_layers": 3,
                                             "lmax": 2 if head != "1o" else 1, "r_max": 4.0}},
        "loss": {"property": name},
        "optimizer": {"batch_size": 8, "lr": 5e-3},
        "run": {"minutes": args.minutes, "max_epochs": 2000, "threads": 1},
    })  # fmt: skip
    training = [frames[i] for i in train]
    torch.manual_seed(0)
    # species and mean neighbour count of the whole pool: a small N may lack an element
    model = new_model(config, data_statistics([frames[i] for i in pool], 4.0))
    run = out / f"tensorhead-{name}-{len(train)}"
    quiet = lambda *a, **k: None  # noqa: E731
    fit(model, training, [frames[i] for i in valid], config, run, progress=False, log=quiet)
    best = load_model(run / "model.safetensors")
    return evaluate(lambda idx, rot: graph_predict(best, idx, rot), name)


results = []
for name, head in (("dipole", "1o"), ("polarizability", "0e + 2e")):
    for n in args.sizes:
        rows = [(f"MLP ×{k}", run_mlp(name, pool[:n], k)) for k in args.copies]
        rows += [("invariant", run_invariant(name, pool[:n]))]
        rows += [(f"TensorHead {head}", run_tensorhead(name, head, pool[:n]))]
        for model, (mae, error) in rows:
            results.append(dict(property=name, model=model, n=n, mae=mae, equivariance=error))
            print(f"{name} {model} N={n}: MAE {mae:.4f}, equivariance {error:.1e}", flush=True)

(out / "results.json").write_text(json.dumps(results, indent=1))
from plot import plot_and_table  # noqa: E402

plot_and_table(results, out)
print(f"wrote {out / 'tensor_properties.png'} and {out / 'results.md'}")
