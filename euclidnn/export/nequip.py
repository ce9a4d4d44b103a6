"""NequIP's hand-written energy-and-forces path in an exported file: the method
``energy_forces``.

An exported NequIP file (not ``--portable``) has, beside ``forward`` (per-atom energies, forces
by autograd: the reference), a method that returns per-atom energies, forces and the cell
derivative from the inference path of :mod:`euclidnn.models.nequip_forces` (the chain rule
written out, no autograd graph), traced: every partial derivative of the convolutions is the
custom op ``euclidnn::uvu_conv`` at its slot (:func:`euclidnn.kernels.conv_partial` records it
while the trace runs inside :func:`euclidnn.kernels.recording_ops`), the rest stock operations:

    energy_forces(positions, numbers, edge_src, edge_dst, edge_shift=None, cell=None,
                  weight=None) -> (atom_energy [N], forces [N, 3], cell_grad [3, 3])

``forces`` = −∂(Σ_i weight_i E_i)/∂positions and ``cell_grad`` = ∂(Σ_i weight_i E_i)/∂cell
(``weight`` [N], default ones): LAMMPS passes 1 for the atoms it owns and 0 for its ghosts. The
weight seeds the backward pass (the readout's gradient of atom i times weight_i), so one
backward pass serves any weights.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from euclidnn import kernels
from euclidnn.data.graph import Graph
from euclidnn.models import nequip_forces
from euclidnn.models.nequip import NequIP


def nequip_op_applies(model: nn.Module) -> bool:
    """Whether ``model`` is a NequIP whose function the hand-written path computes (its plan
    applies: :meth:`~euclidnn.models.NequIP.fast_path_applies`), and the convolution kernel is
    on (``EUCLIDNN_NATIVE`` not ``"0"``) and builds here
    (:func:`~euclidnn.kernels.fused_conv_available`); else the export has no ``energy_forces``."""
    return (
        isinstance(model, NequIP)
        and model.fast_path_applies()
        and kernels.fused_conv_available(torch.zeros(0, dtype=model.dtype))
    )


def nequip_energy_forces(model: NequIP, graph: Graph, weight: Tensor) -> tuple[Tensor, ...]:
    """What ``energy_forces`` traces for a NequIP (after
    :func:`~euclidnn.export.torchscript.exported_graph`, inside
    :func:`euclidnn.kernels.recording_ops`): the graph's
    :func:`~euclidnn.models.nequip_forces.topology` →
    :func:`~euclidnn.models.nequip_forces.weighted_energy_forces`."""
    top = nequip_forces.topology(model, graph)
    return nequip_forces.weighted_energy_forces(model, model.inference_plan, graph, top, weight)
