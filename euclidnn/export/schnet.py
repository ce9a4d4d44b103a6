"""SchNet's whole energy-and-forces kernel in an exported file: the method ``energy_forces``.

An exported SchNet file (not ``--portable``) has, beside ``forward`` (per-atom energies, forces
by autograd: the reference), a method that returns per-atom energies, forces and the cell
derivative from one call of the C kernel ``_schnet.c`` as the custom op
``euclidnn::schnet_energy_forces`` (:func:`euclidnn.kernels.schnet.schnet_op` in Python,
``schnet_op.cpp`` in the LAMMPS plugin), with no autograd graph:

    energy_forces(positions, numbers, edge_src, edge_dst, edge_shift=None, cell=None,
                  weight=None) -> (atom_energy [N], forces [N, 3], cell_grad [3, 3])

``forces`` = −∂(Σ_i weight_i E_i)/∂positions and ``cell_grad`` = ∂(Σ_i weight_i E_i)/∂cell
(``weight`` [N], default ones): LAMMPS passes 1 for the atoms it owns and 0 for its ghosts.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from euclidnn import kernels
from euclidnn.data.graph import Graph
from euclidnn.models.schnet import SchNet
from euclidnn.nn.radial import gaussian_centres


def schnet_op_applies(model: nn.Module) -> bool:
    """Whether ``model`` is a SchNet whose function the kernel computes exactly, and the kernel
    is on (``EUCLIDNN_NATIVE`` not ``"0"``, as for the convolution op) and builds here; else the
    export has no ``energy_forces``."""
    return (
        kernels.native_enabled()
        and isinstance(model, SchNet)
        and model.kernel_is_exact()
        and kernels.schnet_kernel_available()
    )


def schnet_energy_forces(model: SchNet, graph: Graph, weight: Tensor) -> tuple[Tensor, ...]:
    """What ``energy_forces`` traces for a SchNet (after
    :func:`~euclidnn.export.torchscript.exported_graph`): the undirected pairs
    (:meth:`~euclidnn.data.Graph.edge_pairs`) and species rows → the custom op."""
    cfg, positions = model.config, graph.positions
    pair_edge, edge_pair = graph.edge_pairs()
    species = model.species_index.of_graph(graph)
    mu, gamma = gaussian_centres(cfg.r_max, cfg.num_basis, 0.0, cfg.gamma, positions.dtype)
    weights = model.kernel_weights()
    params = [*weights[:7], *(w for block in weights.interactions for w in block)]
    return torch.ops.euclidnn.schnet_energy_forces(
        positions, species, graph.edge_src, graph.edge_dst, edge_pair, pair_edge,
        graph.edge_shift, graph.cell[0], weight, mu, params, float(gamma), float(cfg.r_max),
    )  # fmt: skip
