"""Test error against training-set size: fit each model on nested subsets, evaluate all on one
fixed test set, fit MAE ∝ N^−β and plot them together on log–log axes.

Example:
  euclidnn learning-curve ethanol --models nequip-l0,nequip-l1,nequip-l2,schnet \\
      --sizes 50,100,250,500,1000 --minutes-per-fit 3 --out runs/curve

Writes OUT/learning_curve.png, OUT/learning_curve.json (sizes, test MAEs, β ± σ per model;
per fit its epochs, minutes, stop reason and whether it converged) and one run folder per fit
(OUT/<model>-N<size>/). A fit stopped by --minutes-per-fit or --max-epochs has not converged:
its error is limited by compute, not data; the summary line of each model and the plot (open
circles) say which. ``--test FILE,…`` evaluates every fit on other sets too (trained on a
melt, tested on the quenched glass): a curve per model and set. OUT must be new or empty (or
--overwrite); a run that fails or is interrupted removes what it wrote there. Training
refuses data whose RMS force exceeds data.max_force_rms of --config (10 eV/Å: a wrong unit).
--minutes-per-fit is a cap: the fits use the plateau schedule with early stopping, so that each
converges, unless --config asks for cosine or linear.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, NamedTuple


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn learning-curve``."""
    from euclidnn.cli.config_io import add_read_arguments, positive_int

    parser.add_argument("data", help="labelled structures: a file or a shipped set's name")
    parser.add_argument(
        "--models",
        default="nequip-l0,nequip-l1,nequip-l2,schnet",
        help="comma-separated: nequip-l<lmax>, nequip, allegro or schnet (default: "
        "nequip-l0,nequip-l1,nequip-l2,schnet)",
    )
    parser.add_argument("--sizes", default="50,100,250,500,1000", help="training-set sizes")
    parser.add_argument("--minutes-per-fit", type=float, default=3.0)
    parser.add_argument("--max-epochs", type=positive_int, default=None)
    parser.add_argument("--n-valid", type=positive_int, default=100)
    parser.add_argument("--n-test", type=positive_int, default=500)
    parser.add_argument(
        "--test",
        default="",
        help="comma-separated files of further test sets, read like DATA (e.g. quench.xyz)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=positive_int, help="CPU threads for PyTorch")
    parser.add_argument("--config", help="YAML config the fits start from")
    parser.add_argument("--out", default="runs/learning-curve")
    parser.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_read_arguments(parser)


def _model_choice(name: str) -> dict:
    if name in ("schnet", "allegro"):
        return {"name": name}
    if name.startswith("nequip-l") and name[8:].isdigit():
        return {"name": "nequip", "settings": {"lmax": int(name[8:])}}
    if name == "nequip":
        return {"name": "nequip"}
    raise ValueError(
        f"--models: unknown model {name!r}; use nequip-l0…l3, nequip, allegro or schnet"
    )


class _Split(NamedTuple):
    """The one split every fit shares: training pool (structure, name) pairs, in the order
    nested subsets take them, and the fixed validation and test structures; ``others``: the
    further test sets of ``--test`` by file."""

    train: list[tuple[Any, str]]
    valid: list[Any]
    test: list[Any]
    others: dict[str, list[Any]]


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn learning-curve``: arguments and --out checked, one fixed split, then for
    each model a fit per size, a power law through the test errors, and the table and plot of
    them all. What it wrote to --out is removed again when it fails or is interrupted."""
    import torch

    from euclidnn.cli.config_io import (
        load_config,
        new_output_folder,
        read_options,
        removed_on_failure,
    )

    sizes = _sizes(args.sizes)
    base = load_config(args.config, {"run": {"minutes": args.minutes_per_fit}})
    configs = {
        name: _fit_config(base, _model_choice(name), args) for name in args.models.split(",")
    }
    options = read_options(args, base)
    out = Path(args.out)
    before = new_output_folder(out, "--out", args.overwrite)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        with removed_on_failure(out, before):
            _run(args, base, configs, sizes, out, options)
    except KeyboardInterrupt:  # also fit's TrainingInterrupted: this command cannot resume
        raise KeyboardInterrupt(f"interrupted; what it wrote to {out} is removed") from None
    return 0


def _run(args, base, configs: dict, sizes: list[int], out: Path, options: dict) -> None:
    """The split, the fits and the summary, in the checked folder ``out``; ``options``: how
    to read the data."""
    from euclidnn.cli.config_io import check_label_scales, read_data, write_text
    from euclidnn.data.splits import split_indices
    from euclidnn.train.plots import learning_curve_plot

    structures, names = read_data(args.data, args.index, options)
    check_label_scales("learning-curve", args.data, structures, base.data.max_force_rms)
    needed = max(sizes) + args.n_valid + args.n_test
    if needed > len(structures):
        raise ValueError(
            f"{args.data}: {len(structures)} structures (--index {args.index!r}), but the largest "
            f"of --sizes ({max(sizes)}) + --n-valid ({args.n_valid}) + --n-test ({args.n_test}) "
            f"need {needed}; give smaller sizes or more data"
        )
    parts = split_indices(len(structures), max(sizes), args.n_valid, args.n_test, seed=args.seed)
    others = {}
    for path in filter(None, args.test.split(",")):
        others[path], _ = read_data(path, ":", options)
        check_label_scales("learning-curve", path, others[path], base.data.max_force_rms)
    split = _Split(
        train=[(structures[i], names[i]) for i in parts.train],
        valid=[structures[i] for i in parts.valid],
        test=[structures[i] for i in parts.test],
        others=others,
    )
    print(
        f"{args.data}: {len(structures)} structures; sizes {sizes}, validation {len(split.valid)}, "
        f"test {len(split.test)} (fixed, disjoint), seed {args.seed}",
        flush=True,
    )
    forces = all(s.forces is not None for s in [*split.test, *sum(others.values(), [])])
    key = "forces_mae_meV_per_A" if forces else "energy_mae_meV"
    table = {
        name: _curve(name, config, split, sizes, key, args) for name, config in configs.items()
    }
    summary = {"data": str(args.data), "metric": key, "n_test": len(split.test), "models": table}
    write_text(out / "learning_curve.json", json.dumps(summary, indent=2))
    unit = "meV/Å" if key.startswith("forces") else "meV"
    curves = {}  # one line per model and test set
    for name, curve in table.items():
        curves[name if not others else f"{name}: test split"] = curve
        for path, other in curve.get("tests", {}).items():
            curves[f"{name}: {Path(path).name}"] = {
                "sizes": curve["sizes"],
                "fits": curve["fits"],
                **other,
            }
    plot = learning_curve_plot(
        curves, out / "learning_curve.png", f"test {key.split('_')[0]} MAE ({unit})"
    )
    print(f"table: {out / 'learning_curve.json'}\nplot: {plot}")


def _sizes(text: str) -> list[int]:
    """``--sizes``: distinct positive training-set sizes, ascending.

    >>> _sizes("100,50,100")
    [50, 100]
    """
    try:
        sizes = sorted({int(s) for s in text.split(",")})
    except ValueError:
        sizes = []
    if not sizes or sizes[0] < 1:
        raise ValueError(f"--sizes {text!r}: expected positive integers, e.g. 50,100,250")
    return sizes


def _fit_config(base, choice: dict, args):
    """The config of one model's fits: the base config, whose model settings apply only to the
    model it names, with the model choice and this command's budget and seed. The budget is a
    cap here, not a target (each fit should converge), so ``schedule.kind: auto`` means the
    plateau schedule with early stopping; a config's cosine or linear is kept."""
    from euclidnn.cli.config_io import check_model_settings

    shared = base.model.settings if base.model.name == choice["name"] else {}
    kind = "plateau" if base.schedule.kind == "auto" else base.schedule.kind
    config = base.replace(
        model={**choice, "settings": {**shared, **choice.get("settings", {})}},
        schedule={"kind": kind},
        run={
            "minutes": args.minutes_per_fit,
            "max_epochs": args.max_epochs or base.run.max_epochs,
            "seed": args.seed,
        },
    )
    return check_model_settings(config)


def _curve(name: str, config, split: _Split, sizes: list[int], key: str, args) -> dict:
    """Fit the model on the first N training structures for each N (nested subsets) and
    evaluate each best model on the test set; the errors and their power law."""
    import torch

    from euclidnn.cli.config_io import model_settings, new_model
    from euclidnn.models import load_model
    from euclidnn.train import compare, data_statistics, fit, metrics
    from euclidnn.train.curves import power_law_fit
    from euclidnn.train.loss import labelled_pairs

    r_max, dtype = model_settings(config)["r_max"], getattr(torch, config.run.dtype)
    test = labelled_pairs(split.test, r_max, dtype, config.loss)
    others = {
        path: labelled_pairs(s, r_max, dtype, config.loss) for path, s in split.others.items()
    }
    errors, fits, other_errors = [], [], {path: [] for path in others}
    for size in sizes:
        structures, names = (list(column) for column in zip(*split.train[:size]))
        stats = data_statistics(structures, r_max, names=names)
        torch.manual_seed(args.seed)
        model = new_model(config, stats).to(dtype)
        folder = Path(args.out) / f"{name}-N{size}"
        folder.mkdir(parents=True, exist_ok=True)  # inside the checked --out
        result = fit(
            model,
            structures,
            split.valid,
            config,
            folder,
            train_names=names,
            progress=not args.quiet,
            log=lambda message: None,
        )
        fits.append(_fit_summary(result))
        best = load_model(folder / "model.safetensors")
        comparison, _ = compare(best, test, config.loss)
        errors.append(metrics(comparison)[key])
        line = f"  {name:10s} N = {size:5d}: test {key} = {errors[-1]:.3f}"
        for path, pairs in others.items():
            other_errors[path].append(metrics(compare(best, pairs, config.loss)[0])[key])
            line += f", {Path(path).name} {other_errors[path][-1]:.3f}"
        print(f"{line} ({fits[-1]['epochs']:.0f} epochs, {fits[-1]['stop_reason']})", flush=True)
    law = power_law_fit(sizes, errors)
    capped = [size for size, f in zip(sizes, fits) if not f["converged"]]
    note = f"; capped, not converged: N = {capped}" if capped else "; every fit converged"
    print(f"  {name}: β = {law.beta:.3f} ± {law.beta_error:.3f}{note}", flush=True)
    curve = {"sizes": sizes, "errors": errors, **law._asdict(), "fits": fits}
    if others:
        curve["tests"] = {
            path: {"errors": e, **power_law_fit(sizes, e)._asdict()}
            for path, e in other_errors.items()
        }
    return curve


def _fit_summary(result) -> dict:
    """One fit of a curve: its epochs, minutes, stop reason, and whether it converged (stopped
    by its own rule, not by ``--minutes-per-fit`` or ``--max-epochs``: a capped fit is limited
    by compute, not by data, and bends the curve)."""
    return {
        "epochs": result.epochs,
        "minutes": result.seconds / 60,
        "stop_reason": result.stop_reason,
        "converged": result.converged,
    }
