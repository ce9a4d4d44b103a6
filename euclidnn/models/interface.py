"""The questions every euclidnn model answers: :class:`Potential`.

``predict``, the MD calculator, ``fit``, ``evaluate``, ``interpret``, the exporter and the CLI
ask a model these and nothing else: no caller inspects a model's class or config.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from euclidnn.data.graph import Graph

__all__ = ["Potential"]


class Potential:
    r"""Mixin of every model: ``class SchNet(Potential, nn.Module)``.

    A model implements :attr:`config`, :attr:`cutoff`, :attr:`num_hops` and :attr:`species`,
    and an energy model :meth:`atomic_energies`; it may implement :meth:`species_embeddings`;
    it inherits :attr:`receptive_field`, :attr:`dtype`, :attr:`device` and
    :meth:`energy_and_forces` (autograd), and overrides the last where it has a faster exact
    path (SchNet's C kernel, NequIP's and Allegro's hand-written derivatives). Its ``forward(graph)`` returns the energy per structure
    [n_graphs] eV — the sum of :meth:`atomic_energies` over each structure's atoms — or, for
    an output head, the property per structure.

    Attributes:
        config: the frozen dataclass that rebuilds the model (with random weights).
        cutoff: r_max in Å; atoms farther apart than this share no edge.
        num_hops: how many times information crosses an edge before it reaches an atom's
            energy (message-passing layers; 1 for a strictly local model).
        species: the atomic numbers the model knows, in the order of its species tables.
        predicts_energy: whether ``forward`` returns an energy (False for a property head,
            whose output has no forces).

    >>> from euclidnn.models import SchNet, SchNetConfig
    >>> model = SchNet(SchNetConfig(species=(1, 8), num_features=4, num_interactions=2))
    >>> model.cutoff, model.num_hops, model.receptive_field, model.species, model.dtype
    (5.0, 2, 10.0, (1, 8), torch.float32)
    """

    config: Any
    predicts_energy: bool = True

    @property
    def cutoff(self) -> float:
        raise NotImplementedError

    @property
    def num_hops(self) -> int:
        raise NotImplementedError

    @property
    def species(self) -> tuple[int, ...]:
        raise NotImplementedError

    def atomic_energies(self, graph: Graph) -> Tensor:
        """Energy E_i of every atom (eV), per-species scale and shift included, such that
        ``forward(graph)`` is the sum of E_i over each structure's atoms (the same numbers,
        bit for bit). E_i is differentiable in ``graph.positions`` (first derivatives in
        inference; the exporter's C++ caller takes forces by autograd of a sum of E_i), and
        depends only on atoms within :attr:`receptive_field` of atom i.

        An energy model implements it; a property head (``predicts_energy`` False) has none.

        Shapes: graph (n_atoms, n_edges) → [n_atoms] eV
        """
        raise NotImplementedError(f"{type(self).__name__} has no atomic energies")

    def species_embeddings(self) -> Tensor | None:
        """The learned table of species features [len(species), F] (one row per element, in
        the order of :attr:`species`), or None where the model has none."""
        return None

    @property
    def receptive_field(self) -> float:
        """How far (Å) an atom can be from atom i and still change E_i: ``num_hops · cutoff``
        (the ghost shell a domain-decomposed MD rank needs)."""
        return self.num_hops * self.cutoff

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point dtype of the weights (graphs are cast to it by ``predict``)."""
        return self._first_tensor().dtype

    @property
    def device(self) -> torch.device:
        return self._first_tensor().device

    def _first_tensor(self) -> Tensor:
        for tensor in self.parameters():  # type: ignore[attr-defined]
            return tensor
        for tensor in self.buffers():  # type: ignore[attr-defined]
            if tensor.is_floating_point():
                return tensor
        return torch.empty(0)

    def energy_and_forces(self, graph: Graph) -> tuple[Tensor, Tensor]:
        """Energy per structure and forces F = −∂E/∂R for inference (no graph kept for a
        second derivative), by autograd; a model with a faster exact path overrides this.

        The graph must already be in the model's dtype and on its device (``predict``
        sees to it).

        Shapes: graph (n_atoms, n_graphs) → ([n_graphs] eV, [n_atoms, 3] eV/Å)
        """
        positions = graph.positions.detach().requires_grad_(True)
        with torch.enable_grad():
            energy = self(replace(graph, positions=positions))  # type: ignore[operator]
            grad = None
            if energy.requires_grad:
                (grad,) = torch.autograd.grad(energy.sum(), positions, allow_unused=True)
        forces = torch.zeros_like(positions) if grad is None else -grad
        return energy.detach(), forces
