"""Energy, forces and stress of a model on a graph: one autograd call, exactly conservative."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from euclidnn.data.graph import Graph
from euclidnn.models.interface import Potential

__all__ = ["Prediction", "predict"]


@dataclass(frozen=True)
class Prediction:
    """What a potential predicts for a graph (one structure or a batch).

    Shapes:
        energy: [n_graphs] eV
        forces: [n_atoms, 3] eV/Å, or None when not asked for
        stress: [n_graphs, 3, 3] eV/Å³ (positive = tensile, (1/V) ∂E/∂ε), or None
    """

    energy: Tensor
    forces: Tensor | None = None
    stress: Tensor | None = None


def predict(
    model: nn.Module,
    graph: Graph,
    *,
    forces: bool = True,
    stress: bool = False,
    training: bool = False,
) -> Prediction:
    r"""Energy of ``model`` on ``graph`` and its derivatives.

    F_i = −∂E/∂r_i,   σ = (1/V) ∂E/∂ε |_{ε=0}

    where the positions and the cell are deformed by the symmetric strain ε,
    r → r (1 + sym ε) (:meth:`~euclidnn.data.Graph.deformed`; Knuth et al., Comput. Phys.
    Commun. 190, 33 (2015)). Both derivatives come from **one** ``torch.autograd.grad`` call.

    Args:
        model: maps a :class:`~euclidnn.data.Graph` to the energy per structure [n_graphs] eV.
        graph: the input; never modified.
        forces: compute forces.
        stress: compute the stress (every structure in the batch needs a cell of nonzero volume).
        training: keep the graph of the derivatives (``create_graph=True``) so that a loss on
            forces or stress can be back-propagated to the weights (double backward). With
            ``training=False`` (inference, MD) the returned tensors carry no gradient, and
            energy and forces alone come from the model's
            :meth:`~euclidnn.models.Potential.energy_and_forces` (autograd, or a faster exact
            path the model offers, such as SchNet's C kernel).

    The model is never modified (nothing is switched on it for the call), so several threads
    may share it, one training while another predicts. A graph whose floating-point dtype
    differs from the model's parameters is cast to the model's dtype.

    Shapes: → Prediction(energy [n_graphs], forces [n_atoms, 3] | None, stress [n_graphs, 3, 3] | None)

    >>> from euclidnn.data import Structure
    >>> class Spring(nn.Module):  # E = Σ_edges r² / 4 (each pair counted twice)
    ...     def forward(self, graph):
    ...         e = 0.25 * graph.edge_vectors().pow(2).sum(-1)
    ...         return torch.zeros(graph.num_graphs, dtype=e.dtype).index_add(0, graph.batch[graph.edge_dst], e)
    >>> g = Graph.from_structure(Structure([1, 1], [[0, 0, 0], [0, 0, 1.0]]), r_max=2.0, dtype=torch.float64)
    >>> p = predict(Spring(), g)
    >>> p.energy.tolist(), p.forces[1, 2].item()
    ([0.5], -1.0)
    """
    graph = _as_model_dtype(model, graph)
    if not (forces or stress):
        with torch.set_grad_enabled(training and torch.is_grad_enabled()):
            return Prediction(energy=model(graph))
    if forces and not stress and not training and isinstance(model, Potential):
        energy, force = model.energy_and_forces(graph)
        return Prediction(energy=energy, forces=force)
    positions = graph.positions
    if forces and not positions.requires_grad:
        positions = positions.detach().requires_grad_(True)
    inputs: list[Tensor] = []
    if forces:
        inputs.append(positions)
    if stress:
        volume = torch.linalg.det(graph.cell).abs()  # [n_graphs] Å³
        if bool((volume == 0).any()):
            raise ValueError(
                "predict(stress=True): every structure needs a cell of nonzero volume; "
                f"structures {torch.nonzero(volume == 0).flatten().tolist()} have none"
            )
        strain = torch.zeros_like(graph.cell).requires_grad_(True)  # [n_graphs, 3, 3]
        inputs.append(strain)
        graph = graph.deformed(positions, strain)
    else:
        graph = replace(graph, positions=positions)
    energy = model(graph)  # [n_graphs] eV
    grads = torch.autograd.grad(energy.sum(), inputs, create_graph=training, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
    force = -grads[0] if forces else None
    sigma = grads[-1] / volume[:, None, None] if stress else None
    if not training:
        energy = energy.detach()
    return Prediction(energy=energy, forces=force, stress=sigma)


def _as_model_dtype(model: nn.Module, graph: Graph) -> Graph:
    """``graph`` in the floating-point dtype of the model's weights (unchanged if equal, or
    if the model has none): a float32 model given a float64 graph would otherwise run a mixed
    and much slower path."""
    if isinstance(model, Potential):
        dtype = model.dtype
    else:
        parameter = next(model.parameters(), None)
        dtype = graph.positions.dtype if parameter is None else parameter.dtype
    return graph if graph.positions.dtype == dtype else graph.to(dtype)
