"""What an active-learning run and a committee are judged by: ``log.csv``, the report folder
(labelled frames per iteration, σ_F distributions, MD stability time) and the calibration of
σ_F against the true force error (Spearman ρ and a scatter plot).

Figures are :class:`matplotlib.figure.Figure` objects saved directly (no pyplot).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from euclidnn.files import write_text
from euclidnn.train.plots import new_figure, save_figure

__all__ = ["spearman", "calibration_plot", "write_log", "write_report", "LOG_COLUMNS"]

LOG_COLUMNS = (
    "iteration",
    "labels",
    "explore_steps",
    "trajectories",
    "candidates",
    "selected",
    "sigma_median",
    "sigma_p95",
    "sigma_max",
    "stable_fs_min",
    "stable_fs_mean",
    "restarts",
    "minutes",
    "stop",
)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1…n, ties given their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):  # average the ranks of ties
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation ρ: Pearson's correlation of the ranks (ties averaged);
    NaN for fewer than 2 values or a constant input.

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 40]), spearman([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def calibration_plot(
    sigmas: np.ndarray, errors: np.ndarray, path: str | os.PathLike, title: str = ""
) -> Path:
    """Scatter of the committee's σ_F against the true per-frame force error (both eV/Å,
    log–log), with the line error = σ_F and Spearman ρ in the title."""
    fig = new_figure(figsize=(4.8, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(sigmas, errors, s=6, alpha=0.5, lw=0)
    positive = np.concatenate([sigmas[sigmas > 0], errors[errors > 0]])
    if len(positive):
        low, high = positive.min() / 1.5, positive.max() * 1.5
        ax.plot([low, high], [low, high], "k--", lw=0.8, label="error = σ_F")
        ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high))
        ax.legend(loc="upper left", fontsize=8)
    ax.set(xlabel="committee σ_F (eV/Å)", ylabel="true max-atom force error (eV/Å)")
    rho = spearman(sigmas, errors)
    ax.set_title(f"{title}\nSpearman ρ = {rho:.3f} ({len(sigmas)} frames)".strip(), fontsize=9)
    return save_figure(fig, Path(path))


def _summaries(out: Path) -> list[dict]:
    rows = []
    for path in sorted(out.glob("iteration-*/summary.json")):
        rows.append(json.loads(path.read_text()))
    return rows


def write_log(out: str | os.PathLike) -> list[dict]:
    """``out/log.csv`` from the iterations' ``summary.json`` files (rebuilt whole, so a
    resumed run writes the same log); returns its rows."""
    out = Path(out)
    rows = _summaries(out)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=LOG_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in LOG_COLUMNS})
    write_text(out / "log.csv", text.getvalue())
    return rows


def _explorations(out: Path) -> list[tuple[int, list[dict]]]:
    found = []
    for path in sorted(out.glob("iteration-*/exploration.json")):
        iteration = int(path.parent.name.split("-")[1])
        found.append((iteration, json.loads(path.read_text())["trajectories"]))
    return found


def write_report(out: str | os.PathLike) -> list[Path]:
    """``out/report/``: ``labels.png`` (labelled frames vs iteration), ``sigma.png`` (σ_F
    distributions of each exploration), ``stability.png`` (time before the first unphysical
    step, per iteration) and ``summary.json`` (the rows of ``log.csv``)."""
    out = Path(out)
    folder = out / "report"
    rows, explorations = _summaries(out), _explorations(out)
    written = [_labels_plot(rows, folder / "labels.png")]
    written.append(_sigma_plot(explorations, folder / "sigma.png"))
    written.append(_stability_plot(explorations, folder / "stability.png"))
    write_text(folder / "summary.json", json.dumps({"iterations": rows}, indent=1) + "\n")
    return written + [folder / "summary.json"]


def _labels_plot(rows: list[dict], path: Path) -> Path:
    fig = new_figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([r["iteration"] for r in rows], [r["labels"] for r in rows], "o-")
    ax.set(xlabel="iteration", ylabel="labelled frames (training the committee)")
    return save_figure(fig, path)


def _sigma_plot(explorations: list[tuple[int, list[dict]]], path: Path) -> Path:
    fig = new_figure(figsize=(5.0, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for iteration, trajectories in explorations:
        sigmas = np.concatenate([t["sigmas"] for t in trajectories] or [[]])
        sigmas = sigmas[sigmas > 0]
        if len(sigmas):
            bins = np.geomspace(sigmas.min(), sigmas.max() * 1.001, 40)
            ax.hist(
                sigmas, bins=bins, histtype="step", density=True, label=f"iteration {iteration}"
            )
    ax.set(xscale="log", xlabel="σ_F per MD step (eV/Å)", ylabel="density")
    if explorations:
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def _stability_plot(explorations: list[tuple[int, list[dict]]], path: Path) -> Path:
    fig = new_figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    for iteration, trajectories in explorations:
        stable = [t["stable_fs"] / 1000 for t in trajectories]
        ax.scatter([iteration] * len(stable), stable, s=12)
    ax.set(xlabel="iteration", ylabel="MD time before σ_F > upper bound (ps)")
    return save_figure(fig, path)
