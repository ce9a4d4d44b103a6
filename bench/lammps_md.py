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

Large systems: a rank evaluates the model on chunks of its atoms (the pair style's default
``chunk auto``: at most 16384 atoms with edges per evaluation; ``lammps:1:chunkN`` for ``chunk
N``, at most N owned atoms, ``lammps:1:chunk0`` for none), so memory stays bounded; ``lammps:2:weak`` runs 2 ranks on two boxes side by side (weak scaling); ``--steps 0``
times one force evaluation (LAMMPS's setup) by the pair style's own log line, the way to reach
a million atoms (``--sizes 1029000``) in reasonable time. Each row also has the CPU seconds of
the ranks (robust to a shared machine's load) and the chunks' shell work.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from machine import header

HERE = Path(__file__).resolve().parent


def water_box(num_atoms: int, seed: int = 0, copies: int = 1):
    """About ``num_atoms`` atoms of water at 1 g/cm³: molecules on a cubic grid (3.10 Å
    apart), each turned at random; ``copies`` such cubes side by side along x (weak scaling:
    ``copies`` ranks each get one cube's worth)."""
    from ase import Atoms
    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    side = max(round((num_atoms / 3) ** (1 / 3)), 2)
    shape = (copies * side, side, side)
    spacing = (18.015 / 6.02214076e23 / 1.0 * 1e24) ** (1 / 3)  # Å
    water = molecule("H2O")
    water.positions -= water.get_center_of_mass()
    rotations = Rotation.random(int(np.prod(shape)), random_state=seed).as_matrix()
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1).reshape(-1, 3)
    positions = (grid[:, None, :] + 0.5) * spacing + np.einsum(
        "mij,aj->mai", rotations, water.positions
    )
    symbols = water.get_chemical_symbols() * len(grid)
    cell = np.array(shape) * spacing
    return Atoms(symbols, positions.reshape(-1, 3), cell=cell, pbc=True)


def _descendants(root: int) -> list[int]:
    """The process ids under ``root`` (children, their children, …), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _resident_kB(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemoryWatch(threading.Thread):
    """Samples the resident memory of this process's descendants (all MPI ranks together)
    every half second; kills them (by id) when it passes ``limit_kB``: on a shared machine a
    run that grows past its budget is stopped, not left to the kernel's OOM killer."""

    def __init__(self, limit_kB: int):
        super().__init__(daemon=True)
        self.limit_kB, self.peak_kB, self.killed = limit_kB, 0, False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            pids = _descendants(os.getpid())
            total = sum(map(_resident_kB, pids))
            self.peak_kB = max(self.peak_kB, total)
            if total > self.limit_kB and not self.killed:
                self.killed = True
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def _model(name: str):
    import torch

    from euclidnn.models import build_model

    torch.manual_seed(0)
    classes = {"schnet": "SchNet", "nequip": "NequIP", "allegro": "Allegro"}
    return build_model(classes[name], {"species": (1, 8)}).float()


def one(
    engine: str, model_name: str, size: int, ranks: int, steps: int, chunk: int, weak: bool,
    limit_gb: float,
) -> dict:  # fmt: skip
    """One measurement in this process: atom-steps per second and peak memory (``chunk`` < 0:
    the pair style's default; ``weak``: ``ranks`` times ``size`` atoms)."""
    import torch

    from euclidnn.md import Calculator, MDConfig, run_md

    atoms = water_box(size, copies=ranks if weak else 1)
    model = _model(model_name)
    config = MDConfig(
        ensemble="nve",
        steps=steps,
        timestep=0.001,
        log_interval=max(steps, 1),
        trajectory_interval=0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if engine in ("ase", "ase-reference"):
            torch.set_num_threads(ranks)
            result = run_md(atoms, Calculator(model, skin=1.0), config, out, progress=False)
            seconds, ghosts, evaluations, first, shell = (
                result.wall_seconds,
                1.0,
                1,
                float("nan"),
                1.0,
            )
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            total, wall = peak, seconds
            cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        else:
            from euclidnn.export import export
            from euclidnn.md.lammps import run_lammps_md

            export(model, out / "model.pt")
            watch = MemoryWatch(int(limit_gb * 2**20))
            watch.start()
            start = time.perf_counter()
            try:
                result = run_lammps_md(
                    out / "model.pt", atoms, config, out, ["H", "O"], ranks=ranks,
                    progress=False, chunk=None if chunk < 0 else chunk,
                )  # fmt: skip
            finally:
                watch.done.set()
                watch.join()
            if watch.killed:
                raise MemoryError(f"stopped: the ranks passed {limit_gb} GB together")
            wall = time.perf_counter() - start
            ghosts = _ghost_factor(out / "lammps.out")
            evaluations, first, shell = _evaluations(out / "lammps.out")
            # LAMMPS's loop time; with 0 steps (one force evaluation: a million atoms), the
            # time of that evaluation
            seconds = result.wall_seconds if steps else first
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            peak, cpu = children.ru_maxrss, children.ru_utime + children.ru_stime
            total = watch.peak_kB
    return {
        "engine": engine,
        "model": model_name,
        "atoms": len(atoms),
        "ranks": ranks,
        "chunk": chunk,
        "weak": weak,
        "steps": steps,
        "atom_steps_per_s": len(atoms) * max(steps, 1) / seconds,
        "seconds_per_step": seconds / max(steps, 1),
        "first_force_s": first,
        "ns_per_day": result.ns_per_day,
        "peak_kB_per_atom": peak / len(atoms),  # the largest process over all atoms
        "peak_kB_per_owned_atom": peak * ranks / len(atoms),  # … over the atoms of one rank
        "peak_total_MB": total / 1024,  # all ranks together, sampled
        "wall_s": wall,  # LAMMPS: with setup, files and the first force evaluation
        # CPU seconds of the ranks (LAMMPS: the whole run, setup and every force evaluation;
        # ASE: this process, model building included), what load on a shared machine
        # does not inflate
        "cpu_s": cpu,
        "ghost_factor": ghosts,
        "evaluations_per_step": evaluations,
        "shell_work": shell,  # atoms given their edges / atoms (1: no shell recomputed)
    }


def _ghost_factor(path: Path) -> float:
    """(owned + ghost) / owned atoms of the first rank, from LAMMPS's neighbour statistics."""
    text = path.read_text()
    owned = re.search(r"Nlocal:\s+([0-9.]+) ave", text)
    ghost = re.search(r"Nghost:\s+([0-9.]+) ave", text)
    if not (owned and ghost):
        return float("nan")
    return (float(owned.group(1)) + float(ghost.group(1))) / float(owned.group(1))


def _evaluations(path: Path) -> tuple[float, float, float]:
    """Evaluations of the model per step, all ranks together (the chunks), the seconds of the
    first step's forces (the slowest rank) and the shell's work (atoms given their edges over
    atoms), from the plugin's own line in LAMMPS's output; NaN where it is missing."""
    text = path.read_text()
    found = re.findall(
        r"euclidnn: ([0-9.]+) evaluations of the model per step.* the first took ([0-9.]+) s",
        text,
    )
    shell = re.findall(r"atoms with their edges evaluated / atoms: ([0-9.]+)", text)
    nan = float("nan")
    first = tuple(map(float, found[-1])) if found else (nan, nan)
    return (*first, float(shell[-1]) if shell else nan)


def _spec(text: str) -> tuple[str, int, int, bool]:
    """``ENGINE:RANKS[:chunkN][:weak]`` → (engine, ranks, chunk (−1: default), weak)."""
    engine, ranks, *options = text.split(":")
    chunk, weak = -1, False
    for option in options:
        if option == "weak":
            weak = True
        elif option.startswith("chunk"):
            chunk = int(option[5:])
        else:
            raise SystemExit(f"--engines: unknown option {option!r} in {text!r}")
    return engine, int(ranks), chunk, weak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--models", default="schnet,nequip,allegro")
    parser.add_argument(
        "--engines",
        default="ase:1,lammps:1,lammps:2",
        help="ENGINE:RANKS[:chunkN][:weak],… (chunkN: pair_style euclidnn chunk N; weak: RANKS "
        "times the atoms, RANKS boxes side by side)",
    )
    parser.add_argument(
        "--steps",
        default="",
        help="one number, or one per size; 0: one force evaluation (LAMMPS's setup), timed by "
        "the pair style; default: 20 000 / atoms, ≥ 10",
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-ase-atoms", type=int, default=20000)
    parser.add_argument(
        "--max-gb", type=float, default=16.0, help="stop a LAMMPS run whose ranks pass this"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    if args.one:
        engine, model, size, ranks, steps, chunk, weak = args.one.split(":")
        row = one(engine, model, int(size), int(ranks), int(steps), int(chunk), weak == "1", args.max_gb)  # fmt: skip
        print(json.dumps(row))
        return
    sizes = list(map(int, args.sizes.split(",")))
    given = [max(10, 20_000 // size) for size in sizes]
    if args.steps:
        given = list(map(int, args.steps.split(",")))
    steps_of = dict(zip(sizes, given * len(sizes) if len(given) == 1 else given))
    print(f"{header()}; {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    rows: dict[tuple, list[dict]] = {}
    for _ in range(args.repeats):
        for model in args.models.split(","):
            for size in sizes:
                steps = steps_of[size]
                for spec in args.engines.split(","):
                    engine, ranks, chunk, weak = _spec(spec)
                    if engine.startswith("ase") and size > args.max_ase_atoms:
                        continue
                    key = (model, size, engine, ranks, chunk, weak)
                    one_spec = f"{engine}:{model}:{size}:{ranks}:{steps}:{chunk}:{int(weak)}"
                    command = [sys.executable, __file__, "--one", one_spec, "--max-gb", str(args.max_gb)]  # fmt: skip
                    env = dict(os.environ)
                    if engine == "ase-reference":  # the ASE engine without the C kernels
                        env["EUCLIDNN_NATIVE"] = "0"
                    load = os.getloadavg()[0]
                    done = subprocess.run(command, capture_output=True, text=True, env=env)
                    if done.returncode != 0:
                        print(f"{key}: failed: {done.stderr.strip().splitlines()[-1:]}")
                        continue
                    row = json.loads(done.stdout.splitlines()[-1])
                    row["load_before"] = load
                    print(json.dumps(row), flush=True)  # each row as it comes
                    rows.setdefault(key, []).append(row)
    _table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps([r for v in rows.values() for r in v], indent=1))


def _median(runs: list[dict], name: str) -> float:
    return statistics.median(r[name] for r in runs)


def _table(rows: dict[tuple, list[dict]]) -> None:
    """Medians; ``× ASE``: against the ASE engine (1 thread) on the same atoms; ``weak``: the
    rate of RANKS ranks on RANKS× the atoms over RANKS × one rank's rate on one box (1.00:
    perfect weak scaling)."""
    print("| model | atoms | engine | ranks | chunk | atom-steps/s | × ASE | weak | s/step | evaluations/step | peak MB/1k atoms of a rank | peak GB, all ranks | ghost × | load |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (model, size, engine, ranks, chunk, weak), runs in rows.items():
        rate = _median(runs, "atom_steps_per_s")
        base = rows.get((model, size, "ase", 1, -1, False))
        ratio = f"{rate / _median(base, 'atom_steps_per_s'):.2f}" if base and not weak else ""
        one_rank = rows.get((model, size, engine, 1, chunk, False))
        scaling = f"{rate / (ranks * _median(one_rank, 'atom_steps_per_s')):.2f}" if weak and one_rank else ""  # fmt: skip
        print(
            f"| {model} | {runs[0]['atoms']} | {engine} | {ranks} | "
            f"{'default' if chunk < 0 else chunk} | {rate:,.0f} | {ratio} | {scaling} | "
            f"{_median(runs, 'seconds_per_step'):.3g} | "
            f"{_median(runs, 'evaluations_per_step'):.3g} | "
            f"{_median(runs, 'peak_kB_per_owned_atom'):,.0f} | "
            f"{_median(runs, 'peak_total_MB') / 1024:.2f} | "
            f"{_median(runs, 'ghost_factor'):.2f} | "
            f"{min(r['load_before'] for r in runs):.1f}–{max(r['load_before'] for r in runs):.1f} |"
        )


if __name__ == "__main__":
    main()
