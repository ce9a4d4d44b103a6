"""Plots and numbers from MD and PIMD run folders, overlaid on shared axes: pair
distribution, nearest-neighbour and diameter distributions (``distributions.png``), energy
conservation (``energy.png``), mean-square displacement and vibrational density of states
(``dynamics.png``), ``analysis.json``. With ``--model`` and ``--structure``: the model's normal
modes (Hessian by autograd) against a reference's (``normal_modes.csv``, ``normal_modes.png``).
By species (:mod:`euclidnn.cli.analyze_species`): bond angles, partial g(r), diffusion.

Example: euclidnn analyze runs/classical runs/pimd --out runs/plots
         euclidnn analyze runs/li4p2o7_* --angles P-O-P:1.9,O-P-O:1.9 --pairs Li-O,P-O \
             --diffusion Li
         euclidnn analyze --model model.safetensors --structure c20.xyz --reference gfn2-xtb
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

from euclidnn.cli import analyze_species
from euclidnn.cli.md import check_out_folder, where


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn analyze``."""
    parser.add_argument(
        "runs",
        nargs="*",
        help="run folders of `euclidnn md`, or files of `euclidnn label` (each reference MD in "
        "the file is a run)",
    )
    parser.add_argument("--out", default="analysis", help="folder for plots (default analysis)")
    parser.add_argument(
        "--r-max",
        type=float,
        default=6.0,
        help="g(r) range, Å (6; at most 50, or a wider molecule's diameter + 1)",
    )
    parser.add_argument("--bins", type=int, default=150, help="histogram bins (150)")
    parser.add_argument("--skip", type=float, default=0.2, help="equilibration fraction (0.2)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the files an earlier analysis wrote to --out (its other files are kept)",
    )
    analyze_species.add_arguments(parser)
    modes = parser.add_argument_group("normal modes")
    modes.add_argument("--model", help="model file: normal modes from its Hessian")
    modes.add_argument("--structure", help="structure file or molecule name")
    modes.add_argument(
        "--reference", default="gfn2-xtb", help="gfn2-xtb (default), gfn1-xtb or none"
    )
    modes.add_argument(
        "--no-optimize",
        dest="optimize",
        action="store_false",
        help="use the structure as given (default: rattle it by 0.02 Å and relax it with each "
        "calculator first)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn analyze``."""
    import json

    from euclidnn.cli.config_io import refuse_existing
    from euclidnn.files import write_text

    if not args.runs and not args.model:
        raise ValueError("give run folders, or --model and --structure for normal modes")
    if args.model and not args.structure:
        raise ValueError("--model needs --structure")
    if args.bins < 1:
        raise ValueError(f"--bins {args.bins}: give a number of histogram bins ≥ 1")
    if not (math.isfinite(args.skip) and 0 <= args.skip < 1):
        raise ValueError(f"--skip {args.skip}: give a fraction of each run in [0, 1)")
    if args.diffusion and args.blocks < 2:
        raise ValueError(f"--blocks {args.blocks}: give at least 2 blocks for an error bar")
    out = Path(args.out)
    check_out_folder(out, "--out")
    refuse_existing([out / name for name in _outputs(args)], "--out", args.overwrite)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        report = {}
        if args.runs:
            report["runs"], distances = _runs(args, out)
            if distances:
                report["distances"] = distances
                _print_distances(distances)
            if args.diffusion:
                report["arrhenius"] = analyze_species.arrhenius_report(
                    report["runs"], args.diffusion
                )
        if args.model:
            report["normal_modes"] = _normal_modes(args, out)
        write_text(out / "analysis.json", json.dumps(report, indent=2) + "\n")
    except BaseException:
        if created:  # a failed or interrupted analysis leaves no folder of half its plots
            shutil.rmtree(out, ignore_errors=True)
        raise
    print(f"{out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


def _outputs(args: argparse.Namespace) -> list[str]:
    """The names ``run`` may write into ``--out`` for these arguments."""
    names = ["analysis.json"]
    if args.runs:
        names += ["distributions.png", "energy.png", "dynamics.png"]
        names += analyze_species.outputs(args)
    if args.model:
        names += ["normal_modes.csv", "normal_modes.png"]
    return names


class _RunPlots:
    """The figures every run is overlaid on (``matplotlib.figure.Figure``: no pyplot, no
    backend to choose): distributions, energy conservation, dynamics."""

    def __init__(self) -> None:
        from matplotlib.figure import Figure

        self.distributions = Figure(figsize=(15, 4))
        self.distribution_axes = self.distributions.subplots(1, 3)
        self.energy = Figure(figsize=(6, 4))
        self.energy_axis = self.energy.subplots()
        self.dynamics = Figure(figsize=(10, 4))
        self.dynamics_axes = self.dynamics.subplots(1, 2)

    def save(self, out: Path) -> None:
        """``distributions.png``, and ``energy.png``, ``dynamics.png`` where a run had data."""
        titles = ["pair distribution g(r)", "nearest-neighbour distance", "diameter"]
        for axis, title, xlabel in zip(self.distribution_axes, titles, ["r (Å)", "d (Å)", "D (Å)"]):
            axis.set(title=title, xlabel=xlabel)
            if axis.has_data():
                axis.legend(fontsize=8)
        self.distributions.tight_layout()
        self.distributions.savefig(out / "distributions.png", dpi=120)
        if self.energy_axis.has_data():
            axis = self.energy_axis
            axis.set(xlabel="t (ps)", ylabel="E_total − E_total(0) (eV)", title="energy")
            axis.legend(fontsize=8)
            self.energy.tight_layout()
            self.energy.savefig(out / "energy.png", dpi=120)
        if self.dynamics_axes[0].has_data():
            msd_axis, vdos_axis = self.dynamics_axes
            msd_axis.set(xlabel="τ (ps)", ylabel="MSD (Å²)", title="mean-square displacement")
            vdos_axis.set(xlabel="ν̃ (cm⁻¹)", ylabel="VDOS", title="vibrational DOS", xlim=(0, 4000))
            for axis in self.dynamics_axes:
                axis.legend(fontsize=8)
            self.dynamics.tight_layout()
            self.dynamics.savefig(out / "dynamics.png", dpi=120)


def _print_distances(distances: dict) -> None:
    """One line per distribution and two runs: how far apart (and, for angles, the level two
    samples of one distribution would show)."""
    for name, pairs in distances.items():
        for runs, entry in pairs.items():
            level = entry.get("same_distribution_level")
            noise = f" (two samples of one distribution: {level:.2f})" if level is not None else ""
            print(f"{name}, {runs}: integrated |difference| {entry['distance']:.3f}{noise}")


def _runs(args, out: Path) -> tuple[dict, dict]:
    """Overlay the runs' distributions, energies and dynamics; their numbers by folder, and
    how far apart their species distributions are (:meth:`SpeciesPlots.distances`)."""
    from euclidnn.md import analysis

    plots, summary = _RunPlots(), {}
    species_plots = analyze_species.SpeciesPlots(args)
    for run_dir in map(Path, args.runs):
        if run_dir.is_file():  # labelled frames: the reference method's own MD runs
            for key, label, frames, entry in _reference_runs(run_dir, args.skip):
                entry.update(_plot_distributions(frames, args, label, plots.distribution_axes))
                entry.update(
                    analyze_species.analyze(frames, args, run_dir, entry, label, species_plots)
                )
                summary[key] = entry
            continue
        kind = analysis.run_kind(run_dir)
        frames = analysis.read_frames(run_dir, skip=args.skip)
        if not frames:
            raise ValueError(f"{run_dir}: no frames left after --skip {args.skip}")
        kind_name = "PIMD" if kind == "pimd" else "classical"
        label = run_dir.name
        if kind_name.lower() not in run_dir.name.lower():
            label += f" ({kind_name})"
        entry = {"kind": kind, "frames": len(frames)}
        entry.update(_plot_distributions(frames, args, label, plots.distribution_axes))
        entry.update(analysis.read_summary(run_dir))
        entry.update(analyze_species.analyze(frames, args, run_dir, entry, label, species_plots))
        summary[str(run_dir)] = entry
        if kind == "md" and (run_dir / "md.log").is_file():
            _plot_energy(run_dir / "md.log", label, plots.energy_axis)
        if kind == "md" and len(frames) > 4 and "momenta" in frames[0].arrays:
            config = entry.get("config", {})
            interval = config.get("trajectory_interval", 1) * entry.get("timestep_fs", 1.0)
            _plot_dynamics(frames, interval, label, plots.dynamics_axes)
    plots.save(out)
    species_plots.save(out)
    return summary, species_plots.distances()


def _reference_runs(path: Path, skip: float) -> list[tuple[str, str, list, dict]]:
    """(key, label, frames, entry) of each reference MD run in a file of labelled frames; the
    entry has what the species analysis reads of a run folder's ``summary.json``."""
    from euclidnn.md import analysis

    runs = analysis.read_reference(path, skip=skip)
    found = []
    for run in runs:
        if not run.frames:
            raise ValueError(f"{path}: frames {run.first_frame}…: none left after --skip {skip}")
        where = f"frames {run.first_frame}–{run.first_frame + len(run.frames) - 1}"
        temperature = f"{run.temperature_K:g} K" if run.temperature_K is not None else where
        label = f"{path.name} ({temperature})" if len(runs) > 1 else path.name
        entry = {"kind": "reference", "frames": len(run.frames), "first_frame": run.first_frame}
        if run.timestep_fs is not None:
            entry["timestep_fs"] = run.timestep_fs
            entry["config"] = {"trajectory_interval": run.interval}
        if run.temperature_K is not None:
            entry["thermostat_temperature_K"] = run.temperature_K
        found.append((f"{path}#{run.first_frame}", label, run.frames, entry))
    return found


def _plot_distributions(frames, args, label: str, axes) -> dict:
    """g(r), nearest-neighbour distances and (a molecule's) diameters on ``axes``; their means
    and spreads."""
    from euclidnn.data.geometry_checks import check_cutoff
    from euclidnn.md import analysis

    check_cutoff(args.r_max, "--r-max", frames[0])
    r, g = analysis.pair_distribution(frames, args.r_max, args.bins)
    axes[0].plot(r, g, label=label)
    nearest = analysis.nearest_neighbor_distances(frames)
    axes[1].hist(nearest, bins=args.bins // 2, density=True, histtype="step", label=label)
    numbers = {
        "nearest_neighbor_mean_A": float(nearest.mean()),
        "nearest_neighbor_std_A": float(nearest.std()),
    }
    if not frames[0].pbc.any():
        diameter = analysis.diameters(frames)
        axes[2].hist(diameter, bins=args.bins // 2, density=True, histtype="step", label=label)
        numbers.update(diameter_mean_A=float(diameter.mean()), diameter_std_A=float(diameter.std()))
    return numbers


def _plot_energy(log_path: Path, label: str, axis) -> None:
    """E_total(t) − E_total(0) of an MD log."""
    from euclidnn.md import read_log

    log = read_log(log_path)
    axis.plot(log["time_fs"] / 1000, log["total_eV"] - log["total_eV"][0], label=label)


def _plot_dynamics(frames, interval_fs: float, label: str, axes) -> None:
    """Mean-square displacement and vibrational density of states of frames
    ``interval_fs`` apart."""
    import numpy as np

    from euclidnn.md import analysis

    positions = np.array([a.positions for a in frames])
    velocities = np.array([a.get_velocities() for a in frames])
    lags = np.arange(len(frames)) * interval_fs / 1000
    msd = analysis.mean_square_displacement(positions, max_lag=len(frames) // 2)
    axes[0].plot(lags[: len(msd)], msd, label=label)
    vacf = analysis.velocity_autocorrelation(velocities, frames[0].get_masses())
    wavenumbers, density = analysis.vibrational_density_of_states(vacf, interval_fs)
    axes[1].plot(wavenumbers, density, label=label)


def _normal_modes(args, out: Path) -> dict:
    import numpy as np
    import torch
    from ase.optimize import BFGS
    from matplotlib.figure import Figure

    from euclidnn.data.geometry_checks import check_positions
    from euclidnn.data.molecules import load_molecule
    from euclidnn.md import Calculator
    from euclidnn.md.analysis import model_hessian, normal_modes, reference_hessian
    from euclidnn.models import load_model

    model = load_model(args.model).to(torch.float64)
    structure = load_molecule(args.structure)
    check_positions(structure, where(args.structure))

    def relaxed(calculator):
        atoms = structure.copy()
        if args.optimize:
            # rattled first: BFGS keeps the symmetry of its start, so a symmetric saddle point
            # (the ideal I_h C20 of both GFN2-xTB and a model trained on it) would be kept
            atoms.rattle(0.02, seed=0)
            atoms.calc = calculator
            BFGS(atoms, logfile=None).run(fmax=1e-3, steps=2000)
        return atoms

    atoms = relaxed(Calculator(model))
    ours = normal_modes(model_hessian(model, atoms), atoms).wavenumbers
    table = {"model_cm-1": ours.tolist()}
    reference = None
    if args.reference.lower() != "none":
        methods = {"gfn2-xtb": "GFN2-xTB", "gfn1-xtb": "GFN1-xTB"}
        if args.reference.lower() not in methods:
            raise ValueError(f"--reference {args.reference}: use {sorted(methods)} or none")
        from tblite.ase import TBLite

        calculator = TBLite(method=methods[args.reference.lower()], verbosity=0)
        reference_atoms = relaxed(calculator)
        reference = normal_modes(
            reference_hessian(reference_atoms, calculator), reference_atoms
        ).wavenumbers
        table["reference_cm-1"] = reference.tolist()
        table["mean_absolute_difference_cm-1"] = float(np.abs(ours - reference).mean())
    rows = ["mode,model_cm-1" + (",reference_cm-1" if reference is not None else "")]
    for k, value in enumerate(ours):
        rows.append(f"{k},{value:.2f}" + (f",{reference[k]:.2f}" if reference is not None else ""))
    (out / "normal_modes.csv").write_text("\n".join(rows) + "\n")
    figure = Figure(figsize=(5, 5))
    axis = figure.subplots()
    if reference is not None:
        axis.plot(reference, ours, "o", ms=4)
        top = max(ours.max(), reference.max()) * 1.05
        axis.plot([0, top], [0, top], "k--", lw=0.8)
        axis.set(xlabel=f"{args.reference} (cm⁻¹)", ylabel="model (cm⁻¹)")
    else:
        axis.plot(ours, "o", ms=4)
        axis.set(xlabel="mode", ylabel="model (cm⁻¹)")
    axis.set_title("normal modes")
    figure.tight_layout()
    figure.savefig(out / "normal_modes.png", dpi=120)
    return table
