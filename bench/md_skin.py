"""MD steps per second through euclidnn's ASE calculator with and without the neighbour-list
skin, and the fraction of a step spent outside the model (neighbour list, ASE, Python).

Velocity Verlet at 0.5 fs from 300 K velocities; repeats interleaved (skin 0, skin S, skin 0,
…), each on a fresh calculator after a warm-up; medians reported. Without ``--model`` a SchNet
with random weights (64 features, 3 interactions, r_max 5 Å) is used; random weights may pull
atoms onto each other within a few hundred steps (the calculator then stops with an error),
and so does a molecular model in a periodic box: periodic systems need a model trained on one.

    python bench/md_skin.py --repeats 7 --steps 200 [--model model.safetensors]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.build import molecule
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

sys.path.insert(0, str(Path(__file__).parent))
from machine import header  # noqa: E402
from models import ASPIRIN_POSITIONS, ASPIRIN_SYMBOLS  # noqa: E402

from euclidnn.data import Graph  # noqa: E402
from euclidnn.md import Calculator  # noqa: E402
from euclidnn.models import SchNet, SchNetConfig, load_model, predict  # noqa: E402


def steps_per_second(model, atoms, skin: float, steps: int, seed: int) -> tuple[float, int]:
    atoms = atoms.copy()
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(seed))
    atoms.calc = Calculator(model, skin=skin)
    dynamics = VelocityVerlet(atoms, 0.5 * units.fs)
    dynamics.run(10)  # warm-up
    start = time.perf_counter()
    dynamics.run(steps)
    return steps / (time.perf_counter() - start), atoms.calc.rebuilds


def model_seconds(model, atoms, repeats: int = 50) -> float:
    """Median time of predict() alone on a prepared graph."""
    graph = Graph.from_ase(atoms, r_max=model.config.r_max, dtype=next(model.parameters()).dtype)
    predict(model, graph)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(model, graph)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file (default: random SchNet)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--skin", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--systems", nargs="+", default=["ethanol", "aspirin"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(header(), flush=True)
    torch.manual_seed(0)
    if args.model:
        model = load_model(args.model)
    else:
        model = SchNet(SchNetConfig(species=(1, 6, 8), num_features=64, num_interactions=3))
    models = dict.fromkeys(["ethanol", "aspirin"], model)
    systems = {
        "ethanol": molecule("CH3CH2OH"),
        "aspirin": Atoms(ASPIRIN_SYMBOLS, positions=ASPIRIN_POSITIONS),
    }
    print(f"torch threads {args.threads}, {args.steps} steps × {args.repeats} repeats, medians")
    print(
        f"| system | atoms | skin 0 steps/s | skin {args.skin} Å steps/s | gain | rebuilds (skin {args.skin}) "
        "| outside the model |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.systems:
        model = models[name]
        atoms = systems[name]
        rates = {0.0: [], args.skin: []}
        rebuilds = []
        for repeat in range(args.repeats):
            for skin in rates:
                rate, count = steps_per_second(model, atoms, skin, args.steps, seed=repeat)
                rates[skin].append(rate)
                if skin:
                    rebuilds.append(count)
        without, with_skin = (statistics.median(rates[s]) for s in rates)
        outside = 1.0 - model_seconds(model, atoms) * with_skin
        print(f"| {name} | {len(atoms)} | {without:.0f} | {with_skin:.0f} | "
              f"{with_skin / without:.2f}x | {statistics.median(rebuilds):.0f} | {outside:.0%} |")  # fmt: skip


if __name__ == "__main__":
    main()
