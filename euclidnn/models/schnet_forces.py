"""SchNet's energy and forces with hand-written derivatives, for inference.

The chain rule of :meth:`~euclidnn.models.SchNet.forward` written out layer by layer: no
autograd graph is built, and on CPU the whole call runs as one C function
(:func:`euclidnn.kernels.schnet_energy_and_forces`); the PyTorch code here is the reference
it is tested against and the path everywhere else. Notation: filters are computed once per
undirected pair ("row") q, both edges of a pair reading its row; g_z = ∂E/∂z.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from euclidnn import kernels
from euclidnn.data.graph import Graph
from euclidnn.models.common import shifted_softplus
from euclidnn.nn.conv import continuous_filter_conv, continuous_filter_conv_backward
from euclidnn.nn.cutoff import cosine_cutoff_with_derivative
from euclidnn.nn.radial import gaussian_basis_with_derivative, gaussian_centres
from euclidnn.nn.scatter import scatter_sum

if TYPE_CHECKING:
    from euclidnn.models.schnet import SchNet

__all__ = ["energy_and_forces"]

linear = torch.nn.functional.linear


class _Rows(NamedTuple):
    """The pairs' representative edges: endpoints, lattice shifts (None if all zero) and graph."""

    src: Tensor
    dst: Tensor
    shift: Tensor | None
    graph: Tensor


def _rows(graph: Graph) -> _Rows:
    def make(g: Graph) -> _Rows:
        pair_edge, _ = g.edge_pairs()
        src, dst = g.edge_src.index_select(0, pair_edge), g.edge_dst.index_select(0, pair_edge)
        shift = g.edge_shift.index_select(0, pair_edge)
        return _Rows(src, dst, shift if bool(shift.any()) else None, g.batch.index_select(0, src))

    return graph.derived("schnet pair rows", make)


def energy_and_forces(model: SchNet, graph: Graph, edges: kernels.Edges) -> tuple[Tensor, Tensor]:
    """Energy per structure and forces of ``model`` on ``graph`` (see the module docstring).

    Args:
        edges: the graph's edges reading their pairs' rows (:func:`~euclidnn.models.schnet.pair_edges`).

    Shapes: → ([n_graphs] eV, [n_atoms, 3] eV/Å)
    """
    cfg = model.config
    positions = graph.positions
    dtype = positions.dtype
    rows = _rows(graph)
    row_offset = (  # S·cell of each row, as Graph.edge_vectors
        None
        if rows.shift is None
        else (rows.shift.unsqueeze(-1) * graph.cell.index_select(0, rows.graph)).sum(-2)
    )
    species = model.species_index.of_graph(graph)  # [n_atoms]
    mu, gamma = gaussian_centres(cfg.r_max, cfg.num_basis, 0.0, cfg.gamma, dtype, positions.device)
    weights = _weights(model, dtype)

    def reference() -> tuple[Tensor, Tensor]:
        return _pytorch(model, graph, rows, row_offset, species, edges)

    with torch.no_grad():
        return kernels.schnet_energy_and_forces(
            weights, positions, row_offset, edges, graph.batch, graph.num_graphs, species,
            mu, gamma, cfg.r_max, reference=reference,
        )  # fmt: skip


def _weights(model: SchNet, dtype: torch.dtype) -> kernels.SchNetWeights:
    """The model's weights in the kernel's order, read through the modules' own dicts (an
    nn.Module attribute lookup costs about a microsecond, ~70 of them here per call)."""
    layers = model._modules
    params = {name: layers[name]._parameters for name in ("embedding", "readout1", "readout2")}
    buffers = layers["scale_shift"]._buffers or layers["scale_shift"]._parameters
    blocks = []
    for block in layers["interactions"]._modules.values():
        p = {name: m._parameters for name, m in block._modules.items()}
        blocks.append(
            (p["filter1"]["weight"], p["filter1"]["bias"], p["filter2"]["weight"],
             p["filter2"]["bias"], p["in2filter"]["weight"], p["out1"]["weight"],
             p["out1"]["bias"], p["out2"]["weight"], p["out2"]["bias"])
        )  # fmt: skip
    return kernels.SchNetWeights(
        params["embedding"]["weight"],
        params["readout1"]["weight"],
        params["readout1"]["bias"],
        params["readout2"]["weight"],
        params["readout2"]["bias"],
        buffers["scales"].to(dtype),
        buffers["shifts"].to(dtype),
        blocks,
    )


def _radial(model: SchNet, r: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gaussians e(r), cosine cutoff fc(r) and their r-derivatives (the bases of
    :meth:`SchNet.forward`, with their derivatives from the same module).

    Shapes: r: [n_rows] → (e [n_rows, K], de/dr [n_rows, K], fc [n_rows], dfc/dr [n_rows])
    """
    cfg = model.config
    e, de = gaussian_basis_with_derivative(r, cfg.r_max, cfg.num_basis, gamma=cfg.gamma)
    fc, dfc = cosine_cutoff_with_derivative(r, cfg.r_max)
    return e, de, fc, dfc


def _pytorch(
    model: SchNet,
    graph: Graph,
    rows: _Rows,
    row_offset: Tensor | None,
    species: Tensor,
    edges: kernels.Edges,
) -> tuple[Tensor, Tensor]:
    """The reference: forward pass keeping what the reverse pass needs, then the reverse pass."""
    positions = graph.positions
    vec = positions.index_select(0, rows.src) - positions.index_select(0, rows.dst)
    if row_offset is not None:
        vec = vec + row_offset
    r = vec.norm(dim=-1)  # [n_rows] Å
    e, de_dr, fc, dfc_dr = _radial(model, r)
    _, edge_pair = graph.edge_pairs()
    conv = (graph.edge_src, graph.edge_dst, edge_pair)
    state = _forward_pass(model, e, fc, species, conv, edges)
    energy = scatter_sum(state.atom_energy, graph.batch, dim_size=graph.num_graphs)
    g_e, g_fc = _reverse_pass(model, state, conv, edges)
    g_r = torch.addcmul(torch.linalg.vecdot(g_e, de_dr), g_fc, dfc_dr)  # [n_rows]
    g_vec = (g_r / r)[:, None] * vec  # ∂E/∂(r_src − r_dst + shift)
    # F = −∂E/∂R: the source atom of a row gets −g_vec, the destination +g_vec
    forces = torch.zeros_like(positions).index_add_(0, rows.dst, g_vec)
    return energy, forces.index_add_(0, rows.src, g_vec, alpha=-1)


class _State(NamedTuple):
    """What the forward pass keeps for the reverse pass (per interaction t: lists)."""

    a: Tensor  # [n_rows, T·W] first filter layers of all interactions side by side
    w1: Tensor  # [T·W, K] their weights stacked
    f: list[Tensor]  # [n_rows, W] filters before the cutoff
    w: list[Tensor]  # [n_rows, W] filters f · fc
    x: list[Tensor]  # [n_atoms, W] in2filter(h)
    o: list[Tensor]  # [n_atoms, F] out1(m)
    p: Tensor  # [n_atoms, H] readout1(h)
    fc: Tensor  # [n_rows] cutoff
    scale: Tensor  # [n_atoms] per-species scale of the atomic energy
    atom_energy: Tensor  # [n_atoms] eV


def _forward_pass(model: SchNet, e: Tensor, fc: Tensor, species: Tensor, conv, edges) -> _State:
    """h⁰ = embedding, h += out2(ssp(out1(Σ_j x_j ⊙ W_ij))), E_i = shift + scale · readout(h)."""
    its = model.interactions
    width = its[0].filter2.in_features
    # the first filter layers of all T interactions in one matmul: a = [n_rows, T·W]
    w1 = torch.cat([it.filter1.weight for it in its])  # [T·W, K]
    a = torch.addmm(torch.cat([it.filter1.bias for it in its]), e, w1.t())
    s_a = shifted_softplus(a).split(width, dim=1)  # T views [n_rows, W]
    f = [linear(s_t, it.filter2.weight, it.filter2.bias) for it, s_t in zip(its, s_a)]
    w = [f_t * fc[:, None] for f_t in f]
    h = model.embedding.weight.index_select(0, species).to(e.dtype)  # [n_atoms, F]
    n = h.shape[0]
    xs, os = [], []
    for t, it in enumerate(its):
        x = linear(h, it.in2filter.weight)
        m = continuous_filter_conv(x, w[t], conv[0], conv[1], n, conv[2], edges=edges)
        o = linear(m, it.out1.weight, it.out1.bias)
        h = h + linear(shifted_softplus(o), it.out2.weight, it.out2.bias)
        xs.append(x)
        os.append(o)
    p = linear(h, model.readout1.weight, model.readout1.bias)
    out = linear(shifted_softplus(p), model.readout2.weight, model.readout2.bias).squeeze(-1)
    scale = model.scale_shift.scales.to(e.dtype).index_select(0, species)  # [n_atoms]
    shift = model.scale_shift.shifts.to(e.dtype).index_select(0, species)
    atom_energy = torch.addcmul(shift, out, scale)  # as PerSpeciesScaleShift
    return _State(a, w1, f, w, xs, os, p, fc, scale, atom_energy)


def _reverse_pass(model: SchNet, s: _State, conv, edges) -> tuple[Tensor, Tensor]:
    """(∂E/∂e [n_rows, K], ∂E/∂fc [n_rows]) from the forward pass's state.

    nn.Linear y = z Wᵀ + b gives g_z = g_y W; ssp' = sigmoid. torch.mm rather than @: a little
    less overhead per call.
    """
    its = model.interactions
    width = its[0].filter2.in_features
    g_h = torch.mm(
        s.scale[:, None] * model.readout2.weight * torch.sigmoid(s.p), model.readout1.weight
    )
    sig_a = torch.sigmoid(s.a).split(width, dim=1)
    g_a = s.a.new_empty(len(its), s.a.shape[0], width)  # [T, n_rows, W]
    g_fc = torch.zeros_like(s.fc)
    for t in reversed(range(len(its))):
        it = its[t]
        g_m = torch.mm(torch.mm(g_h, it.out2.weight) * torch.sigmoid(s.o[t]), it.out1.weight)
        g_x, g_w = continuous_filter_conv_backward(s.x[t], s.w[t], g_m, *conv, edges=edges)
        g_h = torch.addmm(g_h, g_x, it.in2filter.weight)  # residual + through x = W_in h
        g_fc += torch.linalg.vecdot(g_w, s.f[t])  # Σ_c g_w f
        torch.mul(torch.mm(g_w * s.fc[:, None], it.filter2.weight), sig_a[t], out=g_a[t])
    g_e = torch.bmm(g_a, s.w1.view(len(its), width, -1)).sum(0)  # Σ_t g_a,t W1,t  [n_rows, K]
    return g_e, g_fc
