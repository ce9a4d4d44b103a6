"""``euclidnn evaluate --committee``: a committee's mean against the labels, and how well its
uncertainty σ_F ranks the frames by their true force error (Spearman ρ, calibration plot).

Per frame: σ_F = max over atoms of the norm of the members' per-component force standard
deviation (:mod:`euclidnn.learn.committee`), and the true error = max over atoms of
|F_mean − F_reference|, both eV/Å; σ_E (the members' energy spread) against |E_mean − E_ref|.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: what --plots writes for a committee
COMMITTEE_FILES = ("calibration.png", "metrics.txt")


def _check_outputs(args) -> None:
    from euclidnn.cli.config_io import check_output, refuse_existing

    if args.json:
        check_output(args.json, "--json", folder=False)
        refuse_existing([args.json], "--json", args.overwrite)
    if args.plots:
        check_output(args.plots, "--plots", folder=True)
        files = [Path(args.plots) / name for name in COMMITTEE_FILES]
        refuse_existing(files, "--plots", args.overwrite)


def committee_errors(models, structures, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Per frame: ``sigma_forces``, ``force_error`` (eV/Å), ``energy_std``, ``energy_error``
    (eV), and per force component the mean's error ``force_deltas`` (eV/Å, flattened)."""
    from euclidnn.data.loader import collate_batch
    from euclidnn.learn import committee_predict
    from euclidnn.learn.committee import per_frame_force_error
    from euclidnn.train.config import LossSection
    from euclidnn.train.loss import labelled_pairs

    items = labelled_pairs(structures, models[0].cutoff, models[0].dtype, LossSection())
    values: dict[str, list] = {k: [] for k in ("sigma_forces", "force_error", "energy_std")}
    values |= {"energy_error": [], "force_deltas": []}
    for start in range(0, len(items), batch_size):
        graph, targets = collate_batch(items[start : start + batch_size])
        out = committee_predict(models, graph)
        predicted, reference = out.forces.double().numpy(), targets.forces.double().numpy()
        errors = per_frame_force_error(predicted, reference, graph.batch.numpy())
        values["force_error"].append(errors)
        deltas = predicted - reference
        values["sigma_forces"].append(out.sigma_forces.double().numpy())
        values["energy_std"].append(out.energy_std.double().numpy())
        values["energy_error"].append((out.energy - targets.energy).abs().double().numpy())
        values["force_deltas"].append(deltas.ravel())
    return {k: np.concatenate(v) for k, v in values.items()}


def run_committee(args, options) -> int:
    """Run ``euclidnn evaluate --committee``."""
    from euclidnn.cli.config_io import check_label_scales, read_data, write_text
    from euclidnn.learn import load_committee
    from euclidnn.learn.report import spearman

    _check_outputs(args)
    models = load_committee(args.model)
    structures, names = read_data(args.data, args.index, options)
    check_label_scales("evaluate", args.data, structures)
    for s, name in zip(structures, names):
        if s.forces is None or s.energy is None:
            raise ValueError(f"{name}: --committee needs energy and forces labels")
        unknown = sorted({int(z) for z in s.numbers} - set(models[0].species))
        if unknown:
            raise ValueError(f"{name}: elements {unknown} are not among the committee's species")
    e = committee_errors(models, structures, args.batch_size)
    values = {
        "committee": [str(m) for m in args.model],
        "members": len(models),
        "data": str(args.data),
        "n_structures": len(structures),
        "forces_mae_meV_per_A": 1e3 * float(np.abs(e["force_deltas"]).mean()),
        "energy_mae_meV": 1e3 * float(e["energy_error"].mean()),
        "sigma_forces_median": float(np.median(e["sigma_forces"])),
        "force_error_median": float(np.median(e["force_error"])),
        "spearman_sigma_forces": spearman(e["sigma_forces"], e["force_error"]),
        "spearman_sigma_energy": spearman(e["energy_std"], e["energy_error"]),
    }
    table = _table(values)
    print(table)
    if args.json:
        frames = {k: e[k].round(6).tolist() for k in ("sigma_forces", "force_error")}
        frames |= {k: e[k].round(6).tolist() for k in ("energy_std", "energy_error")}
        write_text(Path(args.json), json.dumps({**values, "frames": frames}, indent=1))
        print(f"metrics: {args.json}")
    if args.plots:
        _write_plots(args, e, table, len(models))
    return 0


def _write_plots(args, e: dict, table: str, members: int) -> None:
    from euclidnn.cli.config_io import Before, removed_on_failure, write_text
    from euclidnn.learn.report import calibration_plot

    folder = Path(args.plots)
    with removed_on_failure(folder, Before.of(folder)):
        title = f"committee of {members} on {Path(args.data).name}"
        plot = calibration_plot(
            e["sigma_forces"], e["force_error"], folder / "calibration.png", title
        )
        write_text(folder / "metrics.txt", table + "\n")
    print(f"plot: {plot}\nreport: {folder}")


def _table(v: dict) -> str:
    rows = [
        ("structures", f"{v['n_structures']}", ""),
        ("members", f"{v['members']}", ""),
        ("force MAE of the mean", f"{v['forces_mae_meV_per_A']:.2f}", "meV/Å"),
        ("energy MAE of the mean", f"{v['energy_mae_meV']:.2f}", "meV"),
        ("σ_F median", f"{v['sigma_forces_median']:.4f}", "eV/Å"),
        ("max-atom error median", f"{v['force_error_median']:.4f}", "eV/Å"),
        ("Spearman ρ(σ_F, error)", f"{v['spearman_sigma_forces']:.3f}", ""),
        ("Spearman ρ(σ_E, error)", f"{v['spearman_sigma_energy']:.3f}", ""),
    ]
    lines = [f"committee of {v['members']} on {v['data']}"]
    lines += [f"  {label:<24} {value:>12} {unit}" for label, value, unit in rows]
    return "\n".join(lines)
