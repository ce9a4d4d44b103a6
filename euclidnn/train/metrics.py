"""How good a model is on labelled structures: predictions beside references, and their
MAE/RMSE in the units people quote (meV, meV/atom, meV/Å)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from euclidnn.data.graph import Graph
from euclidnn.data.loader import collate_batch
from euclidnn.data.targets import Targets
from euclidnn.train.config import LossSection
from euclidnn.train.loss import LossTerms, loss_terms, model_outputs, property_pair

__all__ = ["Comparison", "compare", "metrics"]


@dataclass(frozen=True)
class Comparison:
    """Reference and predicted labels of a set of structures, aligned (numpy, eV and Å).

    Shapes:
        num_atoms: [S]; numbers: [A] (all structures' atoms in order)
        energy, energy_ref: [S] eV | None
        forces, forces_ref: [A, 3] eV/Å | None
        stress, stress_ref: [S, 3, 3] eV/Å³ | None
        property, property_ref: [S, k] in the data's units | None
    """

    num_atoms: np.ndarray
    numbers: np.ndarray
    energy: np.ndarray | None = None
    energy_ref: np.ndarray | None = None
    forces: np.ndarray | None = None
    forces_ref: np.ndarray | None = None
    stress: np.ndarray | None = None
    stress_ref: np.ndarray | None = None
    property: np.ndarray | None = None
    property_ref: np.ndarray | None = None

    @staticmethod
    def concatenate(parts: Sequence[Comparison]) -> Comparison:
        """Several comparisons (batches, or processes) as one, in order."""
        parts = [p for p in parts if len(p.num_atoms)]
        if not parts:
            return Comparison(np.zeros(0, dtype=int), np.zeros(0, dtype=int))

        def cat(name):
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        return Comparison(**{f.name: cat(f.name) for f in fields(Comparison)})


@torch.no_grad()
def _numpy(t):
    return None if t is None else t.detach().cpu().double().numpy()


def compare(
    model: nn.Module,
    items: Sequence[tuple[Graph, Targets]],
    loss: LossSection,
    batch_size: int = 32,
) -> tuple[Comparison, LossTerms]:
    """Predictions of ``model`` beside the labels of ``items`` (pairs from an
    :class:`~euclidnn.data.AtomsDataset`), and the loss terms summed over them."""
    parts, sums, counts = [], 0.0, 0.0
    device = model.device
    for start in range(0, len(items), batch_size):
        graph, targets = collate_batch(items[start : start + batch_size])
        graph, targets = graph.to(device), targets.to(device)
        out = model_outputs(model, graph, targets, loss, training=False)
        terms = loss_terms(out, graph, targets, loss)
        sums, counts = sums + terms.sums.detach().cpu(), counts + terms.counts.cpu()
        part = dict(
            num_atoms=_numpy(graph.num_atoms).astype(int), numbers=graph.numbers.cpu().numpy()
        )
        if loss.property is not None:
            predicted, reference = property_pair(out, targets, loss.property)
            part.update(property=_numpy(predicted), property_ref=_numpy(reference))
        else:
            part.update(energy=_numpy(out.energy), energy_ref=_numpy(targets.energy))
            if out.forces is not None:
                part.update(forces=_numpy(out.forces), forces_ref=_numpy(targets.forces))
            if out.stress is not None:
                part.update(stress=_numpy(out.stress), stress_ref=_numpy(targets.stress))
        parts.append(Comparison(**part))
    if not parts:
        zero = torch.zeros(4, dtype=torch.float64)
        return Comparison.concatenate([]), LossTerms(zero, zero)
    return Comparison.concatenate(parts), LossTerms(sums, counts)


def _mae_rmse(error: np.ndarray) -> tuple[float, float]:
    if error.size == 0:
        return math.nan, math.nan
    return float(np.abs(error).mean()), float(np.sqrt((error**2).mean()))


def metrics(c: Comparison) -> dict[str, float]:
    """MAE and RMSE of every label the comparison holds.

    Keys: ``n_structures``, ``n_atoms``; ``energy_mae_meV``, ``energy_rmse_meV`` (total),
    ``energy_per_atom_mae_meV``, ``energy_per_atom_rmse_meV``; ``forces_mae_meV_per_A``,
    ``forces_rmse_meV_per_A`` (per component) and ``forces_mae_meV_per_A_<element>``;
    ``stress_mae_meV_per_A3``, ``stress_rmse_meV_per_A3``; ``property_mae``,
    ``property_rmse`` (in the data's units).

    >>> c = Comparison(np.array([2]), np.array([1, 1]), energy=np.array([-1.0]),
    ...                energy_ref=np.array([-1.002]))
    >>> m = metrics(c)
    >>> round(m["energy_mae_meV"], 6), round(m["energy_per_atom_mae_meV"], 6)
    (2.0, 1.0)
    """
    from ase.data import chemical_symbols

    out: dict[str, float] = {"n_structures": len(c.num_atoms), "n_atoms": int(c.num_atoms.sum())}
    if c.energy is not None:
        error = c.energy - c.energy_ref
        out["energy_mae_meV"], out["energy_rmse_meV"] = (1000 * v for v in _mae_rmse(error))
        per_atom = _mae_rmse(error / c.num_atoms)
        out["energy_per_atom_mae_meV"], out["energy_per_atom_rmse_meV"] = (
            1000 * v for v in per_atom
        )
    if c.forces is not None:
        error = c.forces - c.forces_ref
        out["forces_mae_meV_per_A"], out["forces_rmse_meV_per_A"] = (
            1000 * v for v in _mae_rmse(error)
        )
        for z in np.unique(c.numbers):
            mae, _ = _mae_rmse(error[c.numbers == z])
            out[f"forces_mae_meV_per_A_{chemical_symbols[z]}"] = 1000 * mae
    if c.stress is not None:
        out["stress_mae_meV_per_A3"], out["stress_rmse_meV_per_A3"] = (
            1000 * v for v in _mae_rmse(c.stress - c.stress_ref)
        )
    if c.property is not None:
        out["property_mae"], out["property_rmse"] = _mae_rmse(c.property - c.property_ref)
    return out
