"""This tree against another version of euclidnn, interleaved call by call in one process.

    git worktree add /tmp/baseline <commit>
    .venv-bench/bin/python bench/versions.py --baseline /tmp/baseline [--repeats 10]

The baseline's package is copied to a temporary directory as ``euclidnn_baseline`` (every
``euclidnn`` name in its Python files rewritten) and imported next to this tree's
``euclidnn``, so that both run the cases of ``bench/models.py`` (energy + forces, and
training steps on 32 ethanols and on 64 waters) on the same inputs, alternating (ours,
baseline, ours, …): machine drift between runs, which on a shared 2-core machine is larger
than most changes, cancels in the ratio. Models are built with the same seed and checked to
give the same energies first. Prints the medians and baseline / ours (> 1: this tree is
faster).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import tempfile
from pathlib import Path

import torch
from machine import header
from models import R_MAX, compare, ours_allegro, ours_nequip, ours_schnet, systems

import euclidnn


def import_baseline(root: Path, into: Path):
    """The package under ``root/euclidnn`` imported as ``euclidnn_baseline``."""
    target = into / "euclidnn_baseline"
    for path in (root / "euclidnn").rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        out = target / path.relative_to(root / "euclidnn")
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".py":
            out.write_text(re.sub(r"\beuclidnn\b", "euclidnn_baseline", path.read_text()))
        else:
            out.write_bytes(path.read_bytes())
    sys.path.insert(0, str(into))
    return importlib.import_module("euclidnn_baseline")


def build(package, make, seed: int = 0):
    """``make()`` (a function of bench/models.py) with ``package`` standing in for euclidnn."""
    real = importlib.import_module("euclidnn.models")
    sys.modules["euclidnn.models"] = importlib.import_module(f"{package.__name__}.models")
    try:
        torch.manual_seed(seed)
        return make()
    finally:
        sys.modules["euclidnn.models"] = real


def step(package, model, graph, train: bool):
    predict = importlib.import_module(f"{package.__name__}.models").predict
    if not train:
        return lambda: predict(model, graph)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # weights stay equal on both sides

    def run():
        p = predict(model, graph, training=True)
        loss = p.energy.pow(2).mean() + p.forces.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", required=True, type=Path, help="a checkout of the other version"
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--only", default="", help="nequip-l1,nequip-l2,allegro,schnet")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--systems", default="", help="comma-separated systems (default all), e.g. ethanol,aspirin"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(header(), flush=True)
    torch.set_default_dtype(torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = import_baseline(args.baseline.resolve(), Path(tmp))
        families = {
            "nequip-l1": lambda: ours_nequip(1),
            "nequip-l2": lambda: ours_nequip(2),
            "allegro": ours_allegro,
            "schnet": ours_schnet,
        }
        if args.only:
            families = {k: v for k, v in families.items() if k in args.only.split(",")}
        print(f"this tree: {Path(euclidnn.__file__).parent}; baseline: {args.baseline}")
        print(f"\n{'case':34s} {'ours ms':>9s} {'baseline ms':>12s} {'baseline/ours':>14s}")
        data = systems()
        if args.systems:
            data = {k: v for k, v in data.items() if k in args.systems.split(",")}
        cases = [(k, v, False) for k, v in data.items()]
        for system in ("ethanol x32", "water 64 pbc"):
            if system in data:
                cases.append((f"train step {system}", data[system], True))
        for name, make in families.items():
            ours, theirs = build(euclidnn, make), build(baseline, make)
            for case, atoms, train in cases:
                atoms = atoms if len(atoms) > 1 else atoms[0]
                g_ours = euclidnn.data.Graph.from_ase(atoms, R_MAX, torch.float32)
                g_base = baseline.data.Graph.from_ase(atoms, R_MAX, torch.float32)
                a = step(euclidnn, ours, g_ours, train)
                b = step(baseline, theirs, g_base, train)
                if not train:  # the same function on both sides
                    torch.testing.assert_close(a().energy, b().energy, rtol=1e-4, atol=1e-3)
                t_ours, t_base = compare(a, b, args.repeats)
                print(
                    f"{name + ' ' + case:34s} {t_ours:9.2f} {t_base:12.2f} {t_base / t_ours:13.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
