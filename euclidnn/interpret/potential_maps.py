"""Ω_Z(r) around a molecule as numbers and pictures: on the surface Σ_i ‖r − r_i‖ = c, or on
a plane grid through the molecule (:mod:`.probe` computes the values)."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols
from ase.data.colors import jmol_colors
from torch import nn

from euclidnn.data.structure import Structure
from euclidnn.files import replacing, write_text
from euclidnn.interpret.probe import (
    isosurface_points,
    local_chemical_potential,
    plane_axes,
    plane_points,
)

__all__ = ["PotentialMap", "potential_map", "plot_potential_map", "write_potential_map"]


@dataclass(frozen=True)
class PotentialMap:
    """Ω_Z at points around a molecule, with the grid they lie on.

    Attributes:
        kind: ``"surface"`` (points on Σ_i ‖r − r_i‖ = ``level``, a (θ, φ) grid of rays from
            the centroid) or ``"plane"`` (a (u, v) grid in the molecule's best plane).
        structure: the molecule.
        probe_number: atomic number of the probe.
        points: where Ω was evaluated, Å.
        omega: Ω_Z there, eV, relative to the isolated probe.
        axis_1, axis_2: the grid: (θ, φ) in rad for a surface, (u, v) in Å for a plane.
        level: c of the surface in Å (0 for a plane).

    Shapes: points: [len(axis_1) · len(axis_2), 3], omega: [len(axis_1) · len(axis_2)]
    """

    kind: str
    structure: Structure
    probe_number: int
    points: np.ndarray
    omega: np.ndarray
    axis_1: np.ndarray
    axis_2: np.ndarray
    level: float = 0.0
    notes: dict = field(default_factory=dict)

    def grid(self) -> np.ndarray:
        """Ω on its grid. Shapes: → [n_1, n_2] (surface: [θ, φ]; plane: [v, u])"""
        if self.kind == "surface":
            return self.omega.reshape(len(self.axis_1), len(self.axis_2))
        return self.omega.reshape(len(self.axis_2), len(self.axis_1))


def potential_map(
    model: nn.Module,
    structure: Structure,
    probe_number: int,
    kind: str = "surface",
    *,
    offset: float = 2.0,
    level: float | None = None,
    resolution: int = 48,
    spacing: float = 0.1,
    batch_size: int = 2048,
) -> PotentialMap:
    """Ω_Z on the surface Σ_i ‖r − r_i‖ = c, c = ``level`` or Σ_i ‖r̄ − r_i‖ + n · ``offset``
    (Å; r̄ the centroid, n atoms), on ``resolution`` × 2·``resolution`` rays; or on a plane
    grid of ``spacing`` Å through the molecule (``kind="plane"``).

    >>> from euclidnn.models import SchNet, SchNetConfig
    >>> model = SchNet(SchNetConfig(species=(1, 6), num_features=8))
    >>> m = potential_map(model, Structure([6, 1], [[0, 0, 0], [0, 0, 1.1]]), 6, resolution=4)
    >>> m.grid().shape
    (4, 8)
    """
    positions = structure.positions
    if kind == "surface":
        if level is None:
            level = float(np.linalg.norm(positions - positions.mean(0), axis=1).sum())
            level += structure.num_atoms * offset
        points, axis_1, axis_2 = isosurface_points(positions, level, resolution, 2 * resolution)
    elif kind == "plane":
        points, axis_1, axis_2 = plane_points(positions, spacing)
        level = 0.0
    else:
        raise ValueError(f"kind must be 'surface' or 'plane', got {kind!r}")
    omega = local_chemical_potential(model, structure, points, probe_number, batch_size=batch_size)
    return PotentialMap(
        kind, structure, int(probe_number), points, omega.double().numpy(), axis_1, axis_2, level
    )


def plot_potential_map(result: PotentialMap, path: str | os.PathLike, title: str = "") -> None:
    """The map as PNG (written atomically): for a surface, the points in 3D coloured by Ω with
    the atoms, beside the (φ, θ) map; for a plane, an image with the atoms marked."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure  # no pyplot: no backend, no global figure registry

    symbol = chemical_symbols[result.probe_number]
    label = f"Ω_{symbol}(r) (eV)"
    positions = result.structure.positions
    colours = [jmol_colors[z] for z in result.structure.numbers]
    grid = result.grid()
    low = min(float(result.omega.min()), -1e-9)
    high = max(float(result.omega.max()), 1e-9)
    # white at Ω = 0; attraction (Ω < 0) blue and repulsion red, each on its own scale
    norm = dict(cmap="coolwarm", norm=TwoSlopeNorm(0.0, low, high))
    if result.kind == "surface":
        figure = Figure(figsize=(11, 4.6))
        axis = figure.add_subplot(1, 2, 1, projection="3d")
        p = result.points
        axis.scatter(p[:, 0], p[:, 1], p[:, 2], c=result.omega, s=4, alpha=0.55, **norm)
        axis.scatter(*positions.T, c=colours, s=120, edgecolor="black", depthshade=False)
        span = np.ptp(p, axis=0).max() / 2
        middle = p.mean(axis=0)
        for setter, m in zip((axis.set_xlim, axis.set_ylim, axis.set_zlim), middle):
            setter(m - span, m + span)
        axis.set_xlabel("x (Å)")
        axis.set_ylabel("y (Å)")
        axis.set_zlabel("z (Å)")
        axis.set_title(f"on Σ‖r − r_i‖ = {result.level:.1f} Å")
        flat = figure.add_subplot(1, 2, 2)
        image = flat.imshow(
            grid,
            origin="upper",
            aspect="auto",
            extent=(0, 360, 180, 0),
            **norm,
        )
        flat.set_xlabel("φ (degrees)")
        flat.set_ylabel("θ (degrees)")
        flat.set_title("the same surface, by direction from the centroid")
        figure.colorbar(image, ax=flat, label=label)
    else:
        figure = Figure(figsize=(6.4, 5.4))
        flat = figure.subplots()
        u, v = result.axis_1, result.axis_2
        image = flat.imshow(
            grid,
            origin="lower",
            extent=(u[0], u[-1], v[0], v[-1]),
            **norm,
        )
        inplane = (positions - positions.mean(0)) @ plane_axes(positions).T
        flat.scatter(inplane[:, 0], inplane[:, 1], c=colours, s=80, edgecolor="black")
        flat.set_xlabel("u (Å)")
        flat.set_ylabel("v (Å)")
        figure.colorbar(image, ax=flat, label=label)
    figure.suptitle(title or f"local chemical potential of a {symbol} probe")
    figure.tight_layout()
    with replacing(path) as tmp:
        figure.savefig(tmp, format="png", dpi=130)


def write_potential_map(
    result: PotentialMap, out: str | os.PathLike, stem: str = "potential", title: str = ""
) -> list[Path]:
    """Write ``<stem>.png``, ``<stem>.csv`` (x, y, z, grid coordinates, Ω in eV) and
    ``<stem>.json`` (probe, kind, level, statistics of Ω, units) into ``out``, atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = ("theta_rad", "phi_rad") if result.kind == "surface" else ("u_A", "v_A")
    if result.kind == "surface":
        first, second = np.meshgrid(result.axis_1, result.axis_2, indexing="ij")
    else:
        second, first = np.meshgrid(result.axis_2, result.axis_1, indexing="ij")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["x_A", "y_A", "z_A", *names, "omega_eV"])
    for point, a, b, value in zip(result.points, first.ravel(), second.ravel(), result.omega):
        writer.writerow([*(f"{c:.6f}" for c in point), f"{a:.6f}", f"{b:.6f}", f"{value:.8g}"])
    summary = {
        "probe": chemical_symbols[result.probe_number],
        "kind": result.kind,
        "level_A": result.level,
        "num_points": int(len(result.omega)),
        "omega_min_eV": float(result.omega.min()),
        "omega_max_eV": float(result.omega.max()),
        "omega_mean_eV": float(result.omega.mean()),
        "omega_std_eV": float(result.omega.std()),
        "definition": "Omega_Z(r) = eps_Z(r) - eps_Z(inf): atomic energy of a probe atom that "
        "receives messages but sends none, minus that of the isolated probe",
        "molecule": [chemical_symbols[z] for z in result.structure.numbers],
        **result.notes,
    }
    paths = [out / f"{stem}.png", out / f"{stem}.csv", out / f"{stem}.json"]
    plot_potential_map(result, paths[0], title)
    write_text(paths[1], text.getvalue())
    write_text(paths[2], json.dumps(summary, indent=2) + "\n")
    return paths
