"""Molecular dynamics with a trained model: NVE, NVT (Langevin or Bussi) through ASE, or
path-integral MD through i-PI (``--ensemble pimd --beads 8``). The run folder gets the
trajectory and a per-step log as the run goes, and ``summary.json`` at the end.

Example: euclidnn md model.safetensors ethanol --ensemble nvt --temperature 300 --steps 10000
"""

from __future__ import annotations

import argparse

DTYPES = ("float32", "float64")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn md``."""
    parser.add_argument("model", help="model file (.safetensors) written by euclidnn")
    parser.add_argument(
        "structure", help="structure file (xyz, extxyz, cif, …; first frame) or molecule name"
    )
    parser.add_argument("--ensemble", choices=("nve", "nvt", "pimd"), default="nve")
    parser.add_argument("--thermostat", choices=("langevin", "bussi"), default="langevin")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs (default 0.5)")
    parser.add_argument("--steps", type=int, default=1000, help="MD steps (default 1000)")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin, 1/fs (0.01)")
    parser.add_argument(
        "--relaxation-time", type=float, default=100.0, help="Bussi τ / PILE-L centroid τ, fs"
    )
    parser.add_argument("--log-interval", type=int, default=1, help="steps between log lines")
    parser.add_argument(
        "--trajectory-interval", type=int, default=10, help="steps between frames (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="md_run", help="run folder (default md_run)")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="cast the model")
    parser.add_argument("--device", default=None, help="cpu, cuda, … (default: the model's)")
    parser.add_argument("--skin", type=float, default=1.0, help="neighbour-list skin, Å (1.0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="PyTorch threads (default 1: fastest for molecules, and spinning OpenMP threads "
        "slow down badly on a busy machine; raise it for large periodic systems)",
    )
    pimd = parser.add_argument_group("path-integral MD (i-PI)")
    pimd.add_argument("--beads", type=int, default=8, help="replicas P (default 8)")
    pimd.add_argument("--clients", type=int, default=1, help="force clients K in parallel")
    pimd.add_argument(
        "--address",
        default=None,
        help="HOST:PORT for TCP, or a UNIX socket name (default: one named after the run folder)",
    )
    pimd.add_argument(
        "--no-local-clients",
        dest="local_clients",
        action="store_false",
        help="start no force client here; connect them with `euclidnn serve`",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn md``."""
    import torch

    from euclidnn.data.molecules import load_molecule
    from euclidnn.md import Calculator, MDConfig, PIMDConfig, run_md, run_pimd

    torch.set_num_threads(args.threads)
    atoms = load_molecule(args.structure)
    if args.ensemble == "pimd":
        config = PIMDConfig(
            beads=args.beads,
            temperature=args.temperature,
            timestep=args.timestep,
            steps=args.steps,
            relaxation_time=args.relaxation_time,
            log_interval=args.log_interval,
            trajectory_interval=args.trajectory_interval,
            seed=args.seed,
            clients=args.clients if args.local_clients else 0,
            address=args.address,
        )
        try:
            result = run_pimd(
                args.model,
                atoms,
                config,
                args.out,
                dtype=args.dtype,
                device=args.device,
                progress=not args.quiet,
                threads=args.threads,
            )
        except RuntimeError as error:  # i-PI or a client failed; its log is named
            print(f"euclidnn md: error: {error}")
            return 1
        print(
            f"{args.out}: {result.steps} PIMD steps ({config.beads} beads), "
            f"{result.ns_per_day:.3g} ns/day, K_cv = {result.kinetic_cv_eV:.4f} ± "
            f"{result.kinetic_cv_error_eV:.4f} eV (classical {result.kinetic_classical_eV:.4f})"
        )
        return 0
    config = MDConfig(
        ensemble=args.ensemble,
        thermostat=args.thermostat,
        temperature=args.temperature,
        timestep=args.timestep,
        steps=args.steps,
        friction=args.friction,
        relaxation_time=args.relaxation_time,
        log_interval=args.log_interval,
        trajectory_interval=args.trajectory_interval,
        seed=args.seed,
    )
    calculator = Calculator(
        args.model, dtype=_dtype(args.dtype), device=args.device, skin=args.skin
    )
    result = run_md(atoms, calculator, config, args.out, progress=not args.quiet)
    drift = result.energy_drift_meV_per_atom_per_ps
    print(
        f"{args.out}: {result.steps} steps, {result.ns_per_day:.3g} ns/day, "
        f"<T> = {result.mean_temperature_K:.1f} K"
        + (f", drift {drift:.3g} meV/atom/ps" if drift is not None else "")
    )
    return 0


def _dtype(name: str | None):
    import torch

    return None if name is None else getattr(torch, name)
