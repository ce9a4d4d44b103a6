"""MD throughput of the LAMMPS engine (``pair_style euclidnn``, MPI ranks) against our ASE
engine, on liquid-water boxes of growing size, with peak memory per atom.

Each measurement runs in a fresh subprocess (so its peak memory is its own): NVE velocity
Verlet at 0.001 fs (random weights pull atoms onto each other within a few steps even at
0.05 fs; the work of a step does not depend on the timestep, though neighbour lists are then
rebuilt less often than at 0.5 fs, in both engines alike) from 300 K velocities, float32 models with random weights and the default
configuration of ``euclidnn train`` (SchNet, NequIP, Allegro for H and O), on a box of water
molecules (1 g/cm³, random orientations on a grid). LAMMPS's rate is its loop time (the MD steps
without setup); the ASE engine's the steps' wall time. Peak memory is the largest resident set
of one process (the Python process for ASE; the largest rank for LAMMPS), over the atoms of
the whole system (for 2 ranks: per rank, about half the system each). ``ase-reference`` is the
ASE engine with ``EUCLIDNN_NATIVE=0``: the plain PyTorch path, the one an exported (traced)
model runs, without the fused C kernels. Repeats are
interleaved (every row once, then again) and medians reported.

A message-passing model (SchNet, NequIP) in LAMMPS on several ranks needs every rank to hold
the atoms within its receptive field (layers × r_max) of its sub-domain; on one rank, periodic
images are its own atoms and no shell is passed to the model. ``ghost ×`` reports LAMMPS's
(owned + ghost) / owned atoms of a rank (ghosts LAMMPS keeps; the model sees one copy of each
atom it needs).

    python bench/lammps_md.py --sizes 1000,10000 --models schnet,nequip,allegro --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import header

HERE = Path(__file__).resolve().parent


def water_box(num_atoms: int, seed: int = 0):
    """About ``num_atoms`` atoms of water at 1 g/cm³: molecules on a cubic grid (3.10 Å
    apart), each turned at random."""
    from ase import Atoms
    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    side = max(round((num_atoms / 3) ** (1 / 3)), 2)
    spacing = (18.015 / 6.02214076e23 / 1.0 * 1e24) ** (1 / 3)  # Å
    water = molecule("H2O")
    water.positions -= water.get_center_of_mass()
    rotations = Rotation.random(side**3, random_state=seed).as_matrix()
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    positions = (grid[:, None, :] + 0.5) * spacing + np.einsum(
        "mij,aj->mai", rotations, water.positions
    )
    symbols = water.get_chemical_symbols() * len(grid)
    return Atoms(symbols, positions.reshape(-1, 3), cell=[side * spacing] * 3, pbc=True)


def _model(name: str):
    import torch

    from euclidnn.models import build_model

    torch.manual_seed(0)
    classes = {"schnet": "SchNet", "nequip": "NequIP", "allegro": "Allegro"}
    return build_model(classes[name], {"species": (1, 8)}).float()


def one(engine: str, model_name: str, size: int, ranks: int, steps: int) -> dict:
    """One measurement in this process: atom-steps per second and peak memory."""
    import torch

    from euclidnn.md import Calculator, MDConfig, run_md

    atoms = water_box(size)
    model = _model(model_name)
    config = MDConfig(
        ensemble="nve", steps=steps, timestep=0.001, log_interval=steps, trajectory_interval=0
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if engine in ("ase", "ase-reference"):
            torch.set_num_threads(ranks)
            result = run_md(atoms, Calculator(model, skin=1.0), config, out, progress=False)
            seconds, ghosts = result.wall_seconds, 1.0
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        else:
            from euclidnn.export import export
            from euclidnn.md.lammps import run_lammps_md

            export(model, out / "model.pt")
            result = run_lammps_md(
                out / "model.pt", atoms, config, out, ["H", "O"], ranks=ranks, progress=False
            )
            seconds = result.wall_seconds  # LAMMPS's loop time
            ghosts = _ghost_factor(out / "lammps.out")
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "engine": engine,
        "model": model_name,
        "atoms": len(atoms),
        "ranks": ranks,
        "atom_steps_per_s": len(atoms) * steps / seconds,
        "ns_per_day": result.ns_per_day,
        "peak_kB_per_atom": peak / len(atoms),
        "ghost_factor": ghosts,
    }


def _ghost_factor(path: Path) -> float:
    """(owned + ghost) / owned atoms of the first rank, from LAMMPS's neighbour statistics."""
    text = path.read_text()
    owned = re.search(r"Nlocal:\s+([0-9.]+) ave", text)
    ghost = re.search(r"Nghost:\s+([0-9.]+) ave", text)
    if not (owned and ghost):
        return float("nan")
    return (float(owned.group(1)) + float(ghost.group(1))) / float(owned.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--models", default="schnet,nequip,allegro")
    parser.add_argument("--engines", default="ase:1,lammps:1,lammps:2", help="ENGINE:RANKS,…")
    parser.add_argument("--steps", type=int, default=0, help="default: 20 000 / atoms, ≥ 10")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-ase-atoms", type=int, default=20000)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    if args.one:
        engine, model, size, ranks, steps = args.one.split(":")
        print(json.dumps(one(engine, model, int(size), int(ranks), int(steps))))
        return
    print(f"{header()}; {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    rows: dict[tuple, list[dict]] = {}
    for _ in range(args.repeats):
        for model in args.models.split(","):
            for size in map(int, args.sizes.split(",")):
                steps = args.steps or max(10, 20_000 // size)
                for spec in args.engines.split(","):
                    engine, ranks = spec.split(":")
                    if engine.startswith("ase") and size > args.max_ase_atoms:
                        continue
                    key = (model, size, engine, int(ranks))
                    command = [sys.executable, __file__, "--one", f"{engine}:{model}:{size}:{ranks}:{steps}"]  # fmt: skip
                    env = dict(os.environ)
                    if engine == "ase-reference":  # the ASE engine without the C kernels
                        env["EUCLIDNN_NATIVE"] = "0"
                    done = subprocess.run(command, capture_output=True, text=True, env=env)
                    if done.returncode != 0:
                        print(f"{key}: failed: {done.stderr.strip().splitlines()[-1:]}")
                        continue
                    row = json.loads(done.stdout.splitlines()[-1])
                    print(json.dumps(row), flush=True)  # each row as it comes
                    rows.setdefault(key, []).append(row)
    _table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps([r for v in rows.values() for r in v], indent=1))


def _table(rows: dict[tuple, list[dict]]) -> None:
    print("| model | atoms | engine | ranks | atom-steps/s | × ASE (1 thread) | ns/day | peak kB/atom | ghost × |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for (model, size, engine, ranks), runs in rows.items():
        rate = statistics.median(r["atom_steps_per_s"] for r in runs)
        base = rows.get((model, size, "ase", 1))
        ratio = rate / statistics.median(r["atom_steps_per_s"] for r in base) if base else None
        print(
            f"| {model} | {runs[0]['atoms']} | {engine} | {ranks} | {rate:,.0f} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} | "
            f"{statistics.median(r['ns_per_day'] for r in runs):.3g} | "
            f"{statistics.median(r['peak_kB_per_atom'] for r in runs):.2f} | "
            f"{statistics.median(r['ghost_factor'] for r in runs):.2f} |"
        )


if __name__ == "__main__":
    main()
