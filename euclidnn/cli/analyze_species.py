"""``euclidnn analyze`` by species, for periodic glasses and melts as for molecules: bond-angle
distributions (``--angles P-O-P:1.9,O-P-O:1.9`` → ``angles.png``), partial pair distributions
(``--pairs Li-O,P-O`` → ``partial_rdf.png``), per-species mean-square displacement and
diffusion coefficient with block error bars (``--diffusion Li`` → ``msd_species.png``), and
with three or more runs at different temperatures the Arrhenius activation energy; with two or
more runs, how far apart their angle distributions and g(r) are (``distances``: the integrated
absolute difference, 0 equal, 2 disjoint); the numbers go to ``analysis.json``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from ase.data import atomic_numbers

from euclidnn.cli.config_io import positive_int

ANGLE_BINS = 180  # 1° each
_ANGLE_FORMAT = "A-B-C:CUTOFF or A-B-C:CUTOFF_AB:CUTOFF_BC (Å), e.g. P-O-P:1.9"


class AngleOption(NamedTuple):
    """One triplet of ``--angles``: the angle at ``triplet[1]``; ``cutoffs`` (A–B, B–C) Å."""

    triplet: tuple[str, str, str]
    cutoffs: tuple[float, float]

    @property
    def name(self) -> str:
        return "-".join(self.triplet)


def _symbols(text: str, count: int, item: str, example: str) -> tuple[str, ...]:
    symbols = tuple(text.split("-"))
    if len(symbols) != count or not all(s in atomic_numbers and s != "X" for s in symbols):
        raise argparse.ArgumentTypeError(
            f"{item!r}: give {count} chemical elements joined by '-', e.g. {example}"
        )
    return symbols


def angle_options(text: str) -> list[AngleOption]:
    """An argparse type: ``P-O-P:1.9,O-P-O:1.9`` → a list of :class:`AngleOption`.

    >>> angle_options("P-O-P:1.9,Li-O-P:2.5:1.9")[1]
    AngleOption(triplet=('Li', 'O', 'P'), cutoffs=(2.5, 1.9))
    """
    options = []
    for item in text.split(","):
        name, *numbers = item.strip().split(":")
        triplet = _symbols(name, 3, item, "P-O-P")
        try:
            cutoffs = tuple(float(x) for x in numbers)
        except ValueError:
            cutoffs = ()
        if len(cutoffs) not in (1, 2) or not all(math.isfinite(c) and 0 < c <= 10 for c in cutoffs):
            raise argparse.ArgumentTypeError(f"{item!r}: give {_ANGLE_FORMAT}; cutoffs in (0, 10]")
        options.append(AngleOption(triplet, (cutoffs[0], cutoffs[-1])))
    return options


def pair_options(text: str) -> list[tuple[str, str]]:
    """An argparse type: ``Li-O,P-O`` → ``[("Li", "O"), ("P", "O")]``."""
    return [_symbols(item.strip(), 2, item, "Li-O") for item in text.split(",")]


def species_options(text: str) -> list[str]:
    """An argparse type: ``Li,O`` → ``["Li", "O"]``."""
    return [_symbols(item.strip(), 1, item, "Li")[0] for item in text.split(",")]


def fit_window_option(text: str) -> tuple[float, float]:
    """An argparse type: ``2,10`` → (2.0, 10.0) ps, first < last."""
    try:
        first, last = (float(x) for x in text.split(","))
    except ValueError:
        first = last = math.nan
    if not (math.isfinite(first) and math.isfinite(last) and 0 <= first < last):
        raise argparse.ArgumentTypeError(f"{text!r}: give FIRST,LAST lag in ps, 0 ≤ FIRST < LAST")
    return first, last


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``euclidnn analyze`` by species."""
    group = parser.add_argument_group("by species (periodic cells and molecules)")
    group.add_argument(
        "--angles",
        type=angle_options,
        metavar="TRIPLETS",
        help=f"bond-angle distributions at B, comma-separated {_ANGLE_FORMAT}",
    )
    group.add_argument(
        "--pairs",
        type=pair_options,
        metavar="PAIRS",
        help="partial g(r), e.g. Li-O,P-O (up to --r-max, or half the cell's shortest height)",
    )
    group.add_argument(
        "--diffusion",
        type=species_options,
        metavar="SPECIES",
        help="MSD and diffusion coefficient of these species, e.g. Li (classical runs)",
    )
    group.add_argument(
        "--blocks",
        type=positive_int,
        metavar="M",
        default=5,
        help="blocks of the trajectory for D's error bar (5, at least 2)",
    )
    group.add_argument(
        "--fit-window",
        type=fit_window_option,
        metavar="FIRST,LAST",
        help="lags of the MSD fit, FIRST,LAST ps, within a block (default: 20 %% to 50 %% of "
        "the block; its error bar does not shrink with longer runs, a fixed window's does)",
    )


def outputs(args: argparse.Namespace) -> list[str]:
    """The files these options write into ``--out``."""
    names = [("angles.png", args.angles), ("partial_rdf.png", args.pairs)]
    return [name for name, wanted in names if wanted] + ["msd_species.png"] * bool(args.diffusion)


class SpeciesPlots:
    """One panel per triplet, pair and species; every run overlaid on each. Keeps each run's
    curves (``curves``: distribution name → [(label, x, f, count)]) for :meth:`distances`."""

    def __init__(self, args: argparse.Namespace) -> None:
        from matplotlib.figure import Figure

        self.figures, self.axes, self.curves = {}, {}, {}
        for name, items in [("angles", args.angles), ("partial_rdf", args.pairs),
                            ("msd_species", args.diffusion)]:  # fmt: skip
            if items:
                figure = Figure(figsize=(5 * len(items), 4))
                self.figures[name] = figure
                self.axes[name] = figure.subplots(1, len(items), squeeze=False)[0]

    def distances(self) -> dict:
        """For every distribution and every two runs, how far apart their curves are
        (:func:`~euclidnn.md.local_structure.distribution_distance`: 0 equal, 2 disjoint); for
        angles on the coarser of the two runs' plotted bins, with the level that two samples
        of those sizes from one distribution would show
        (:func:`~euclidnn.md.local_structure.sampling_distance`).
        ``{"P-O-P angle": {"run A vs run B": {"distance": …, …}}}``."""
        from itertools import combinations

        from euclidnn.md.local_structure import distribution_distance, sampling_distance

        report = {}
        for name, runs in self.curves.items():
            for (label_a, x_a, f_a, n_a), (label_b, x_b, f_b, n_b) in combinations(runs, 2):
                if n_a is None:  # a g(r)
                    entry = {"distance": distribution_distance(x_a, f_a, x_b, f_b)}
                elif n_a and n_b:
                    width = max(_angle_bin_width(n_a), _angle_bin_width(n_b))
                    x, p_a, p_b = (v.reshape(-1, width).mean(1) for v in (x_a, f_a, f_b))
                    entry = {
                        "distance": distribution_distance(x, p_a, x, p_b),
                        "same_distribution_level": sampling_distance(p_a, n_a, p_b, n_b),
                        "bin_width_deg": width,
                        "counts": [n_a, n_b],
                    }
                else:
                    continue  # a run without such angles
                if not math.isfinite(entry["distance"]):  # both curves zero
                    continue
                report.setdefault(name, {})[f"{label_a} vs {label_b}"] = entry
        return report

    def save(self, out: Path) -> None:
        for name, figure in self.figures.items():
            for axis in self.axes[name]:
                if axis.has_data():
                    axis.legend(fontsize=8)
            figure.tight_layout()
            figure.savefig(out / f"{name}.png", dpi=120)


def analyze(frames, args, run_dir: Path, run: dict, label: str, plots: SpeciesPlots) -> dict:
    """The numbers of the run in ``run_dir`` (``run``: what analyze knows of it, ``kind``,
    ``config``, …) for the options given, its curves drawn on ``plots`` as ``label``."""
    numbers = {}
    if args.angles:
        with _naming("--angles", run_dir):
            numbers["angles"] = _angles(frames, args.angles, label, plots)
    if args.pairs:
        with _naming("--pairs", run_dir):
            numbers["partial_rdf"] = _pairs(frames, args, label, plots)
    if args.diffusion:
        with _naming("--diffusion", run_dir):
            axes = plots.axes["msd_species"]
            numbers["diffusion"] = _diffusion(frames, args, run, label, axes)
    return numbers


@contextmanager
def _naming(option: str, run_dir: Path) -> Iterator[None]:
    """A ``ValueError`` of the library (which names the species) also names the option and
    the run."""
    try:
        yield
    except ValueError as error:
        raise ValueError(f"{option}: {run_dir}: {error}") from None


def _angles(frames, options: list[AngleOption], label: str, plots: SpeciesPlots) -> dict:
    from euclidnn.md.analysis import bond_angle_distribution

    numbers = {}
    for option, axis in zip(options, plots.axes["angles"]):
        found = bond_angle_distribution(frames, option.triplet, option.cutoffs, ANGLE_BINS)
        curve = (label, found.angle, found.density, found.count)
        plots.curves.setdefault(f"{option.name} angle", []).append(curve)
        width = _angle_bin_width(found.count)
        angle = found.angle.reshape(-1, width).mean(1)  # [180 / width] °
        density = found.density.reshape(-1, width).mean(1)  # [180 / width] 1/°
        axis.plot(angle, density, label=f"{label} ({width}° bins)" if width > 1 else label)
        axis.set(title=f"{option.name} angle at {option.triplet[1]}", xlabel="θ (°)",
                 ylabel="density (1/°)", xlim=(0, 180))  # fmt: skip
        numbers[option.name] = {
            "cutoffs_A": list(option.cutoffs),
            "count": found.count,
            "angles_per_frame": found.count / len(frames),
            "mean_deg": found.mean if found.count else None,
            "most_likely_deg": float(angle[density.argmax()]) if found.count else None,
            "bin_width_deg": width,
        }
    return numbers


def _angle_bin_width(count: int) -> int:
    """Degrees per plotted bin: 1° where there are angles enough, wider (a divisor of 180, at
    most 10°) so that a distribution some 60° wide has about 10 angles per bin.

    >>> _angle_bin_width(100_000), _angle_bin_width(150), _angle_bin_width(3)
    (1, 4, 10)
    """
    return next((w for w in (1, 2, 3, 4, 5, 6, 9) if count * w >= 600), 10)


def _pairs(frames, args, label: str, plots: SpeciesPlots) -> dict:
    import numpy as np

    from euclidnn.md.analysis import partial_rdf

    r_max = args.r_max
    if frames[0].pbc.all():  # beyond half the shortest height an atom meets its own images
        heights = [1.0 / np.linalg.norm(a.cell.reciprocal(), axis=1).max() for a in frames]
        r_max = min(r_max, 0.5 * min(heights))
    numbers = {}
    for pair, axis in zip(args.pairs, plots.axes["partial_rdf"]):
        r, g = partial_rdf(frames, pair, r_max, args.bins)
        name = "-".join(pair)
        plots.curves.setdefault(f"{name} g(r)", []).append((label, r, g, None))
        axis.plot(r, g, label=label)
        ylabel = "g(r)" if frames[0].pbc.all() else "neighbour density (1/Å)"
        axis.set(title=f"{name} partial g(r)", xlabel="r (Å)", ylabel=ylabel)
        numbers[name] = {"r_max_A": r_max, "first_peak_A": float(r[g.argmax()])}
    return numbers


def _diffusion(frames, args, run: dict, label: str, axes) -> dict:
    from euclidnn.md.analysis import diffusion_coefficient

    if run["kind"] == "pimd" or "timestep_fs" not in run:
        why = {
            "pimd": "a PIMD run",
            "md": "no summary.json: time between frames unknown",
            "reference": "frames not from one MD run of `euclidnn label` (no md_step; for "
            "`euclidnn md`, give the run folder, not its trajectory)",
        }[run["kind"]]
        raise ValueError(f"{why}; give classical runs of `euclidnn md` or `euclidnn label`")
    interval_fs = run["config"]["trajectory_interval"] * run["timestep_fs"]
    numbers = {}
    for symbol, axis in zip(args.diffusion, axes):
        found = diffusion_coefficient(
            frames, symbol, interval_fs, blocks=args.blocks, fit_window=args.fit_window
        )
        text = f"{label}: D = {found.coefficient:.3g} ± {found.stderr:.2g} Å²/ps"
        axis.plot(found.lag, found.msd, label=text)
        start, end = found.fit_window
        axis.plot([start, end], [found.fit_slope * t + found.fit_intercept for t in (start, end)],
                  "k--", lw=0.8)  # fmt: skip
        axis.set(title=f"{symbol} (centre of mass held fixed)", xlabel="τ (ps)", ylabel="MSD (Å²)")
        numbers[symbol] = {
            "D_A2_per_ps": found.coefficient,
            "D_stderr_A2_per_ps": found.stderr,
            "D_cm2_per_s": found.coefficient_cm2_per_s,
            "D_stderr_cm2_per_s": found.stderr_cm2_per_s,
            "block_D_A2_per_ps": list(found.block_coefficients),
            "whole_run_D_A2_per_ps": found.fit_slope / 6,
            "whole_run_fit_window_ps": list(found.fit_window),
            "frame_interval_fs": interval_fs,
            "centre_of_mass_removed": True,
        }
        if not frames[0].pbc.any():
            numbers[symbol]["note"] = "a molecule: motion relative to its centre of mass"
    return numbers


def arrhenius_report(runs: dict, species: list[str]) -> dict:
    """E_a of each species from the runs' D and mean temperatures (``summary.json``; for the
    reference's own MD, its thermostat's), where three or more runs at different temperatures
    have a positive D (weighted by D's block error bars); species without them are left out.
    The model's runs and the reference method's (files of `euclidnn label`) are fitted apart:
    the reference's fit is under "SYMBOL (reference)" when both are given."""
    kinds = {run["kind"] for run in runs.values()}
    report = {}
    for kind in ("md", "reference"):
        chosen = [run for run in runs.values() if run["kind"] == kind]
        suffix = " (reference)" if kind == "reference" and "md" in kinds else ""
        for symbol in species:
            fit = _arrhenius_fit(chosen, symbol)
            if fit is not None:
                report[symbol + suffix] = fit
    return report


def _arrhenius_fit(runs: list[dict], symbol: str) -> dict | None:
    from euclidnn.md.analysis import arrhenius
    from euclidnn.md.diffusion import CM2_PER_S_PER_A2_PER_PS

    points = [(_temperature(run), run["diffusion"][symbol]) for run in runs
              if _temperature(run) and run["diffusion"][symbol]["D_A2_per_ps"] > 0]  # fmt: skip
    if len({round(t, 6) for t, _ in points}) < 3:
        return None
    temperatures = [t for t, _ in points]
    errors = [d["D_stderr_A2_per_ps"] for _, d in points]
    weighted = all(e > 0 for e in errors)  # else: unweighted, error from the scatter
    fit = arrhenius(temperatures, [d["D_A2_per_ps"] for _, d in points],
                    errors if weighted else None)  # fmt: skip
    return {
        "activation_energy_eV": fit.activation_energy,
        "activation_energy_stderr_eV": fit.stderr,
        "prefactor_cm2_per_s": fit.prefactor * CM2_PER_S_PER_A2_PER_PS,
        "temperatures_K": temperatures,
        "weighted_by_block_errors": weighted,
    }


def _temperature(run: dict) -> float | None:
    """A run's temperature (K): the mean of a run of `euclidnn md`, else the thermostat's."""
    return run.get("mean_temperature_K", run.get("thermostat_temperature_K"))
