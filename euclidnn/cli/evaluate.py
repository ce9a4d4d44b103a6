"""How accurate a trained model is on labelled structures: MAE and RMSE of energy (total and
per atom), forces (per component and per element), stress; parity plots and a histogram.

Examples:
  euclidnn evaluate runs/eth/model.safetensors test.xyz --json metrics.json --plots report/
  euclidnn evaluate model.safetensors ethanol --index 1500:       # a shipped set's last frames
  euclidnn evaluate qm9.safetensors qm9.db --property homo --per-atom
  euclidnn evaluate --committee m0.safetensors m1.safetensors m2.safetensors test.xyz --plots r/
  euclidnn evaluate --committee runs/al/iteration-004/committee test.xyz --json committee.json

With --committee, the models (or one folder of member folders, */model.safetensors) are a
committee: its mean is evaluated, and its uncertainty σ_F (per frame, the largest per-atom norm
of the members' force standard deviations, eV/Å) is compared with the true error of the mean
(per frame, the largest per-atom norm of the force error): Spearman ρ over the frames, and with
--plots a calibration scatter (calibration.png); --json adds the per-frame values.

Output paths are checked before the model runs; labels whose scale suggests a wrong unit are
reported as warnings (see euclidnn/data/sanity.py).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

#: what --plots writes (parity_plots, training_curve, _write_report): refused without --overwrite
REPORT_FILES = (
    "parity.png",
    "force_errors.png",
    "training_curve.png",
    "metrics.txt",
    "calibration.png",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn evaluate``."""
    from euclidnn.cli.config_io import add_read_arguments, positive_int

    parser.add_argument(
        "model",
        nargs="+",
        help="a model file (model.safetensors of a run); with --committee several, or a folder",
    )
    parser.add_argument("data", help="labelled structures: a file or a shipped set's name")
    parser.add_argument("--json", help="write the metrics to this JSON file")
    parser.add_argument(
        "--committee",
        action="store_true",
        help="the models are a committee: evaluate its mean and its σ_F against the true error",
    )
    parser.add_argument(
        "--plots",
        help="report folder: parity plots, force-error histogram, metrics.txt, and the training "
        "curve when the model sits in a run folder (with its log.csv)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the --json file and the report files in --plots that an earlier run wrote",
    )
    parser.add_argument("--property", help="the per-structure property the model was trained on")
    parser.add_argument("--per-atom", action="store_true", help="the property is intensive")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="default 32")
    add_read_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn evaluate``: outputs checked, model, data, comparison, report."""
    from euclidnn.cli.config_io import (
        check_label_scales,
        check_output,
        read_data,
        read_options,
        refuse_existing,
    )
    from euclidnn.models import load_model
    from euclidnn.train.config import LossSection
    from euclidnn.train.loop import check_training_data
    from euclidnn.train.loss import labelled_pairs
    from euclidnn.train.metrics import compare, metrics

    options = read_options(args)
    if args.committee:
        from euclidnn.cli.evaluate_committee import run_committee

        return run_committee(args, options)
    if len(args.model) > 1:
        raise ValueError(
            f"{len(args.model)} models given: evaluate one, or give --committee for a committee"
        )
    args.model = args.model[0]
    if args.json:
        check_output(args.json, "--json", folder=False)
        refuse_existing([args.json], "--json", args.overwrite)
    if args.plots:
        check_output(args.plots, "--plots", folder=True)
        refuse_existing(
            [Path(args.plots) / name for name in REPORT_FILES], "--plots", args.overwrite
        )
    model = load_model(args.model)
    model.eval()
    structures, names = read_data(args.data, args.index, options)
    check_label_scales("evaluate", args.data, structures)
    loss = LossSection(property=args.property, property_per_atom=args.per_atom)
    _check(model, structures, names, loss, check_training_data)
    items = labelled_pairs(structures, model.cutoff, model.dtype, loss)
    comparison, _ = compare(model, items, loss, batch_size=args.batch_size)
    values = {"model": str(args.model), "data": str(args.data), **metrics(comparison)}
    print(_table(values))
    if args.json:
        _write_json(Path(args.json), values)
        print(f"metrics: {args.json}")
    if args.plots:
        _write_report(args, comparison, values, len(structures))
    return 0


def _write_report(args, comparison, values: dict, count: int) -> None:
    """The --plots folder: parity plots, the training curve (when the model sits in a run
    folder with its log.csv) and metrics.txt; what it added is removed again if it fails."""
    from euclidnn.cli.config_io import Before, removed_on_failure, write_text
    from euclidnn.train.plots import parity_plots, training_curve

    folder = Path(args.plots)
    with removed_on_failure(folder, Before.of(folder)):
        title = f"{Path(args.model).name} on {Path(args.data).name} ({count} structures)"
        written = parity_plots(comparison, folder, title=title)
        log = Path(args.model).parent / "log.csv"
        if log.is_file():
            with open(log) as f:
                rows = list(csv.DictReader(f))
            written.append(training_curve(rows, folder / "training_curve.png"))
        write_text(folder / "metrics.txt", _table(values) + "\n")
    for path in written:
        print(f"plot: {path}")
    print(f"report: {args.plots}")


def _check(model, structures, names, loss, check) -> None:
    from euclidnn.train.config import TrainConfig

    has_forces = all(s.forces is not None for s in structures)
    has_stress = all(s.stress is not None for s in structures)
    weights = {"forces_weight": float(has_forces), "stress_weight": float(has_stress)}
    config = TrainConfig().replace(loss={**vars(loss), **weights})
    check(model, structures, names, config, "evaluation")


def _table(values: dict) -> str:
    rows = [
        ("structures", "n_structures", "{:.0f}", ""),
        ("energy MAE", "energy_mae_meV", "{:.2f}", "meV"),
        ("energy RMSE", "energy_rmse_meV", "{:.2f}", "meV"),
        ("energy MAE per atom", "energy_per_atom_mae_meV", "{:.3f}", "meV/atom"),
        ("energy RMSE per atom", "energy_per_atom_rmse_meV", "{:.3f}", "meV/atom"),
        ("force MAE", "forces_mae_meV_per_A", "{:.2f}", "meV/Å"),
        ("force RMSE", "forces_rmse_meV_per_A", "{:.2f}", "meV/Å"),
        ("stress MAE", "stress_mae_meV_per_A3", "{:.3f}", "meV/Å³"),
        ("stress RMSE", "stress_rmse_meV_per_A3", "{:.3f}", "meV/Å³"),
        ("property MAE", "property_mae", "{:.5g}", "(data units)"),
        ("property RMSE", "property_rmse", "{:.5g}", "(data units)"),
    ]
    rows += [
        (f"force MAE, {key.rsplit('_', 1)[1]}", key, "{:.2f}", "meV/Å")
        for key in values
        if key.startswith("forces_mae_meV_per_A_")
    ]
    lines = [f"{values['model']} on {values['data']}"]
    for label, key, fmt, unit in rows:
        if key in values:
            lines.append(f"  {label:<22} {fmt.format(values[key]):>12} {unit}")
    return "\n".join(lines)


def _write_json(path: Path, values: dict) -> None:
    from euclidnn.cli.config_io import write_text

    write_text(path, json.dumps(values, indent=2))
