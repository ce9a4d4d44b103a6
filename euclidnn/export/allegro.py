"""Allegro's hand-written energy-and-forces path in an exported file: the method
``energy_forces``.

An exported Allegro file (not ``--portable``) has, beside ``forward`` (per-atom energies, forces
by autograd: the reference), a method that returns per-atom energies, forces and the cell
derivative from the inference path of :mod:`euclidnn.models.allegro_forces` (the chain rule
written out, no autograd graph), traced: stock PyTorch operations only, no custom op:

    energy_forces(positions, numbers, edge_src, edge_dst, edge_shift=None, cell=None,
                  weight=None) -> (atom_energy [N], forces [N, 3], cell_grad [3, 3])

``forces`` = −∂(Σ_i weight_i E_i)/∂positions and ``cell_grad`` = ∂(Σ_i weight_i E_i)/∂cell
(``weight`` [N], default ones): LAMMPS passes 1 for the atoms it owns and 0 for its ghosts. The
weight seeds the backward pass (edge ij's energy enters only E_i), so one backward pass serves
any weights. The weight matrices, made from the parameters at each call in Python, are
constants of the trace: the file's weights are frozen anyway.
"""

from __future__ import annotations

from torch import Tensor, nn

from euclidnn import kernels
from euclidnn.data.graph import Graph
from euclidnn.models import allegro_forces
from euclidnn.models.allegro import Allegro


def allegro_op_applies(model: nn.Module) -> bool:
    """Whether ``model`` is an Allegro whose function the hand-written path computes (every
    MLP the default SiLU one: ``silu_only``) and the fast paths are on (``EUCLIDNN_NATIVE``
    not ``"0"``); else the export has no ``energy_forces``."""
    return isinstance(model, Allegro) and model.silu_only and kernels.native_enabled()


def allegro_energy_forces(model: Allegro, graph: Graph, weight: Tensor) -> tuple[Tensor, ...]:
    """What ``energy_forces`` traces for an Allegro (after
    :func:`~euclidnn.export.torchscript.exported_graph`): its
    :meth:`~euclidnn.models.Allegro.frozen_inputs` →
    :func:`~euclidnn.models.allegro_forces.weighted_energy_forces`."""
    frozen = model.frozen_inputs(graph)
    return allegro_forces.weighted_energy_forces(model, frozen, graph, weight)
