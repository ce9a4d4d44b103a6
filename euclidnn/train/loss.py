"""The training loss as sums of squared errors and the counts that normalise them.

Kept as (sums, counts) rather than means so that a batch split over several processes gives
exactly the loss of the whole batch: each process divides its sums by the *global* counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from euclidnn.data.graph import Graph
from euclidnn.data.structure import Structure
from euclidnn.data.targets import Targets
from euclidnn.models.heads import symmetric_matrix
from euclidnn.models.predict import Prediction, predict
from euclidnn.train.config import LossSection

__all__ = ["TERMS", "LossTerms", "labelled_pairs", "wanted", "loss_terms", "model_outputs"]

#: the loss terms, in the order of ``LossTerms.sums`` and ``LossTerms.counts``
TERMS = ("energy", "forces", "stress", "property")


@dataclass(frozen=True)
class LossTerms:
    """Squared-error sums of one batch and the number of values in each.

    Shapes: sums: [4] (``TERMS`` order), counts: [4] — a term absent from the batch has 0, 0.
    """

    sums: Tensor
    counts: Tensor

    def weighted(self, cfg: LossSection, counts: Tensor | None = None) -> Tensor:
        r"""Σ_t w_t sums_t / counts_t, normalised by ``counts`` (default: this batch's own).

        >>> terms = LossTerms(torch.tensor([2.0, 6.0, 0, 0]), torch.tensor([2.0, 3.0, 0, 0]))
        >>> terms.weighted(LossSection(energy_weight=0.5)).item()  # 0.5 · 2/2 + 6/3
        2.5
        """
        counts = self.counts if counts is None else counts
        weights = torch.tensor(
            [cfg.energy_weight, cfg.forces_weight, cfg.stress_weight, 1.0],
            dtype=self.sums.dtype,
            device=self.sums.device,
        )
        return (weights * self.sums / counts.clamp(min=1)).sum()


def labelled_pairs(
    structures: Sequence[Structure], r_max: float, dtype: torch.dtype, cfg: LossSection
) -> list[tuple[Graph, Targets]]:
    """(graph, targets) pairs holding only the labels the loss uses: other per-structure
    entries of a file (metadata such as an MD step) would only get in the way of batching."""
    pairs = []
    for s in structures:
        graph = Graph.from_structure(s, r_max, dtype)
        targets = Targets.from_structure(s, dtype)
        kept = {k: v for k, v in targets.properties.items() if k == cfg.property}
        pairs.append((graph, replace(targets, properties=kept, atom_properties={})))
    return pairs


def wanted(targets: Targets, cfg: LossSection) -> tuple[bool, bool]:
    """Whether the model must give forces and stress for this batch's labels."""
    if cfg.property is not None:
        return False, False
    return targets.forces is not None and cfg.forces_weight > 0, (
        targets.stress is not None and cfg.stress_weight > 0
    )


def model_outputs(
    model: nn.Module, graph: Graph, targets: Targets, cfg: LossSection, training: bool
) -> Prediction:
    """What the loss compares: energy (forces, stress) from :func:`predict`, or the property
    (in ``Prediction.energy``, divided by the atom count for an intensive property)."""
    forces, stress = wanted(targets, cfg)
    out = predict(model, graph, forces=forces, stress=stress, training=training)
    if cfg.property is not None and cfg.property_per_atom:
        counts = graph.num_atoms.to(out.energy.dtype)
        out = Prediction(energy=out.energy / counts.reshape(-1, *[1] * (out.energy.dim() - 1)))
    return out


def property_pair(out: Prediction, targets: Targets, name: str) -> tuple[Tensor, Tensor]:
    """(predicted, reference) property of a batch, in the same shape: [n_graphs, k]. A
    ``0e + 2e`` head (6 numbers) is compared as the symmetric 3×3 tensor it represents."""
    if name not in targets.properties:
        raise ValueError(
            f"loss.property: {name!r} is not a label of the data; it has "
            f"{sorted(targets.properties) or 'no properties'}"
        )
    reference = targets.properties[name]
    predicted = out.energy
    if reference.dim() == 3 and predicted.shape[-1] == 6:
        predicted = symmetric_matrix(predicted)
    n = reference.shape[0]
    predicted, reference = predicted.reshape(n, -1), reference.reshape(n, -1)
    if predicted.shape != reference.shape:
        raise ValueError(
            f"loss.property: the model gives {predicted.shape[1]} numbers per structure, "
            f"the label {name!r} has {reference.shape[1]}"
        )
    return predicted, reference.to(predicted.dtype)


def loss_terms(out: Prediction, graph: Graph, targets: Targets, cfg: LossSection) -> LossTerms:
    """Squared-error sums of a batch:

    - energy: Σ_s ((Ê_s − E_s) / n_s)² (per atom when ``cfg.energy_per_atom``), one per structure;
    - forces: Σ over components (F̂ − F)², 3 n_atoms values;
    - stress: Σ_s Σ_ab ((σ̂ − σ)_ab V_s / n_s)², the virial per atom, 9 per structure;
    - property: Σ over its components, k per structure.
    """
    zero = out.energy.new_zeros(())
    sums, counts = [zero] * 4, [0] * 4
    if cfg.property is not None:
        predicted, reference = property_pair(out, targets, cfg.property)
        sums[3], counts[3] = (predicted - reference).pow(2).sum(), reference.numel()
        return LossTerms(torch.stack(sums), torch.tensor(counts, dtype=zero.dtype))
    n_atoms = graph.num_atoms.to(zero.dtype)
    if targets.energy is None:
        raise ValueError("loss: the batch has no energy labels")
    error = out.energy - targets.energy.to(zero.dtype)
    if cfg.energy_per_atom:
        error = error / n_atoms
    sums[0], counts[0] = error.pow(2).sum(), error.numel()
    if out.forces is not None:
        sums[1], counts[1] = (out.forces - targets.forces).pow(2).sum(), targets.forces.numel()
    if out.stress is not None:
        volume = torch.linalg.det(graph.cell).abs()
        virial = (out.stress - targets.stress) * (volume / n_atoms)[:, None, None]
        sums[2], counts[2] = virial.pow(2).sum(), targets.stress.numel()
    return LossTerms(torch.stack(sums), torch.tensor(counts, dtype=zero.dtype))
