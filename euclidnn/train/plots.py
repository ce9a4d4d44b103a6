"""Figures people look at instead of tables: parity plots, error histograms, training and
learning curves. Each function writes PNG files and returns their paths.

Figures are :class:`matplotlib.figure.Figure` objects drawn and saved directly: no pyplot, no
backend chosen for the process, nothing left open.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from euclidnn.files import replacing
from euclidnn.train.metrics import Comparison

__all__ = ["parity_plots", "training_curve", "learning_curve_plot", "new_figure", "save_figure"]


def new_figure(**kwargs):
    """A matplotlib Figure not tied to pyplot or a backend (safe in threads and servers)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig, path: Path) -> Path:
    """Write the figure to ``path`` whole (:func:`euclidnn.files.replacing`)."""
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=120)
    return path


def _parity(ax, reference, predicted, label, unit, mae):
    ax.scatter(reference, predicted, s=3, alpha=0.4, lw=0)
    low, high = (
        float(min(reference.min(), predicted.min())),
        float(max(reference.max(), predicted.max())),
    )
    pad = 0.03 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], "k--", lw=0.8)
    ax.set(xlabel=f"reference {label} ({unit})", ylabel=f"model {label} ({unit})")
    ax.set_title(f"{label}: MAE {mae}", fontsize=10)
    ax.set_aspect("equal", adjustable="datalim")


def parity_plots(c: Comparison, folder: str | os.PathLike, title: str = "") -> list[Path]:
    """``parity.png`` (energy per atom, forces, stress or property: model vs reference) and
    ``force_errors.png`` (histogram of force-component errors, log counts) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    panels = []
    if c.energy is not None:
        e_ref, e = c.energy_ref / c.num_atoms, c.energy / c.num_atoms
        shift = e_ref.mean()  # per-atom energies relative to the mean: readable axes
        mae = f"{1000 * np.abs(e - e_ref).mean():.2f} meV/atom"
        panels.append((e_ref - shift, e - shift, "energy − mean", "eV/atom", mae))
    if c.forces is not None:
        mae = f"{1000 * np.abs(c.forces - c.forces_ref).mean():.1f} meV/Å"
        panels.append((c.forces_ref.ravel(), c.forces.ravel(), "force", "eV/Å", mae))
    if c.stress is not None:
        mae = f"{1000 * np.abs(c.stress - c.stress_ref).mean():.2f} meV/Å³"
        panels.append((c.stress_ref.ravel(), c.stress.ravel(), "stress", "eV/Å³", mae))
    if c.property is not None:
        mae = f"{np.abs(c.property - c.property_ref).mean():.4g}"
        panels.append((c.property_ref.ravel(), c.property.ravel(), "property", "data units", mae))
    written = []
    if panels:
        fig = new_figure(figsize=(4.2 * len(panels), 4.2))
        axes = fig.subplots(1, len(panels), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            _parity(ax, *panel)
        if title:
            fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        written.append(save_figure(fig, folder / "parity.png"))
    if c.forces is not None:
        error = 1000 * (c.forces - c.forces_ref).ravel()
        fig = new_figure(figsize=(5, 3.6))
        ax = fig.subplots()
        ax.hist(error, bins=80, log=True, color="C1")
        ax.set(xlabel="force component error (meV/Å)", ylabel="count")
        ax.set_title(
            f"{error.size} components; RMSE {np.sqrt((error**2).mean()):.1f} meV/Å", fontsize=10
        )
        fig.tight_layout()
        written.append(save_figure(fig, folder / "force_errors.png"))
    return written


def training_curve(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Training and validation loss, validation force/energy MAE and learning rate against
    epoch (log scale), from a run's history (``log.csv`` rows)."""
    epochs = [float(r["epoch"]) for r in history]
    fig = new_figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    axes[0].semilogy(epochs, [float(r["train_loss"]) for r in history], label="train loss")
    axes[0].semilogy(epochs, [float(r["valid_loss"]) for r in history], label="validation loss")
    axes[0].set(xlabel="epoch", ylabel="loss")
    twin = axes[0].twinx()
    twin.semilogy(epochs, [float(r["lr"]) for r in history], "k:", lw=0.8)
    twin.set_ylabel("learning rate (dotted)")
    axes[0].legend(fontsize=8)
    for key, label in (
        ("forces_mae_meV_per_A", "force MAE (meV/Å)"),
        ("energy_per_atom_mae_meV", "energy MAE (meV/atom)"),
        ("property_mae", "property MAE"),
    ):
        values = [r.get(key) for r in history]
        if all(v not in (None, "") for v in values):
            axes[1].semilogy(epochs, [float(v) for v in values], label=label)
    axes[1].set(xlabel="epoch", ylabel="validation error")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, Path(path))


def learning_curve_plot(
    curves: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, ylabel: str
) -> Path:
    """Test error against training-set size on log–log axes, one line per model, each with
    its fitted power law MAE ∝ N^−β and β ± σ in the legend.

    ``curves[name]`` holds ``sizes``, ``errors``, ``beta``, ``beta_error``, ``prefactor``, and
    optionally ``fits`` (one dict per size with ``converged``): a fit that did not converge
    (stopped by a time or epoch cap) is drawn as an open circle.
    """
    fig = new_figure(figsize=(5.6, 4.4))
    ax = fig.subplots()
    capped = False
    for k, (name, curve) in enumerate(curves.items()):
        sizes, errors = np.asarray(curve["sizes"], float), np.asarray(curve["errors"], float)
        label = f"{name}: β = {curve['beta']:.2f} ± {curve['beta_error']:.2f}"
        done = np.array([f["converged"] for f in curve.get("fits", [])] or [True] * len(sizes))
        ax.loglog(sizes[done], errors[done], "o", color=f"C{k}", label=label)
        ax.loglog(sizes[~done], errors[~done], "o", mfc="none", color=f"C{k}")
        capped |= not done.all()
        if np.isfinite(curve["beta"]):
            grid = np.geomspace(sizes.min(), sizes.max(), 50)
            ax.loglog(grid, curve["prefactor"] * grid ** -curve["beta"], "-", color=f"C{k}", lw=1)
    ax.set(xlabel="training structures N", ylabel=ylabel)
    from matplotlib.ticker import NullFormatter

    sizes = sorted({int(n) for curve in curves.values() for n in curve["sizes"]})
    ax.set_xticks(sizes, [str(n) for n in sizes])  # the sizes fitted, not 10^k (crowded)
    ax.xaxis.set_minor_formatter(NullFormatter())
    if capped:
        ax.plot([], [], "o", mfc="none", color="0.4", label="open: fit stopped by a cap")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, Path(path))
