"""Allegro's energy and forces for inference with the derivative written by hand
(:func:`energy_and_forces`, what :meth:`euclidnn.models.Allegro.energy_and_forces` runs): the
edge geometry (|r|, Y(r̂), u(r), B(r) u(r)) and the network with constant weights, no autograd
graph at all; first derivatives only. Its reference is autograd through
:meth:`~euclidnn.models.Allegro.atomic_energies` (tests compare the two).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from euclidnn.models.edge_derivatives import (
    cell_gradient,
    edge_vector_derivative,
    position_forces,
    radial_derivative,
)
from euclidnn.nn.cutoff import polynomial_cutoff
from euclidnn.nn.radial import bessel_basis
from euclidnn.nn.scatter import scatter_sum
from euclidnn.o3.spherical_harmonics import spherical_harmonics

__all__ = [
    "CentreSlots",
    "Frozen",
    "atom_maps",
    "atomic_energies_and_edge_gradient",
    "centre_slots",
    "energy_and_forces",
    "layer_product",
    "per_atom_product",
    "weighted_energy_forces",
]

if TYPE_CHECKING:
    from euclidnn.data.graph import Graph
    from euclidnn.models.allegro import Allegro, AllegroLayer, _LayerWeights


def _run_or_index(index: Tensor) -> tuple[int, int] | Tensor:
    """``(start, length)`` where ``index`` is start, start + 1, …, else ``index`` itself."""
    n = index.shape[0]
    if n and torch.equal(index, torch.arange(int(index[0]), int(index[0]) + n)):
        return int(index[0]), n
    return index


def _select(x: Tensor, index: tuple[int, int] | Tensor) -> Tensor:
    """``x[..., index]`` along the last dimension, a view for a run (:func:`_run_or_index`)."""
    if isinstance(index, tuple):
        return x.narrow(-1, *index)
    return x.index_select(-1, index.to(x.device))


def _mlp_forward(x: Tensor, matrices: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """A SiLU :class:`~euclidnn.nn.ScalarMLP` run on its :meth:`~euclidnn.nn.ScalarMLP.matrices`,
    keeping the pre-activations for :func:`_mlp_backward`."""
    pre = []
    for k, m in enumerate(matrices):
        if k > 0:
            pre.append(x)
            x = nn.functional.silu(x)
        x = x @ m
    return x, pre


def _mlp_backward(grad: Tensor, matrices: list[Tensor], pre: list[Tensor]) -> Tensor:
    """∂/∂x of ⟨grad, MLP(x)⟩ (weights constant), from :func:`_mlp_forward`'s pre-activations."""
    for k in range(len(matrices) - 1, -1, -1):
        grad = grad @ matrices[k].t()
        if k > 0:
            grad = torch.ops.aten.silu_backward(grad, pre[k - 1])
    return grad


def _add_columns(out: Tensor, index: tuple[int, int] | Tensor, values: Tensor) -> Tensor:
    """``out[..., index] += values`` along the last dimension (repeated indices summed), in
    place; the transpose of :func:`_select`."""
    if isinstance(index, tuple):
        out.narrow(-1, *index).add_(values)
        return out
    return out.index_add_(-1, index.to(out.device), values)


class CentreSlots(NamedTuple):
    """The edges laid out by centre atom: edge e sits in row ``index[e]`` of an
    [n_atoms · width] table, the edges of atom a in rows a · width … a · width + width − 1 (the
    rest zeros), so that a product per centre runs as one batched matrix product
    (:func:`_pad`, :func:`_unpad`). Made once per graph (:func:`centre_slots`)."""

    index: Tensor  # [n_edges] int64
    width: int  # the most edges of one centre


def centre_slots(edge_dst: Tensor, num_atoms: int) -> CentreSlots:
    """:class:`CentreSlots` of edges ending at ``edge_dst`` (in 0 … num_atoms − 1), each
    centre's edges in their order in the list.

    >>> centre_slots(torch.tensor([1, 0, 1, 1]), 3)
    CentreSlots(index=tensor([3, 0, 4, 5]), width=3)
    """
    n = edge_dst.shape[0]
    if n == 0:
        return CentreSlots(edge_dst.new_zeros(0, dtype=torch.int64), 0)
    dst = edge_dst.to(torch.int64)
    order = torch.argsort(dst, stable=True)
    counts = torch.bincount(dst, minlength=num_atoms)
    first = torch.cumsum(counts, 0) - counts  # the first sorted position of each centre
    rank = torch.empty_like(order).index_copy_(0, order, torch.arange(n, device=dst.device))
    width = int(counts.max())
    return CentreSlots(dst * width + rank - first.index_select(0, dst), width)


def per_atom_product(layer: AllegroLayer, slots: CentreSlots | None, num_atoms: int) -> bool:
    """Whether ``layer`` multiplies per centre (:func:`atom_maps`) rather than per edge: it
    reads every component pair (``per_atom``), the slots are known (not while a trace records:
    their width would be a constant of it), and the centres have many edges. A centre's map
    costs as much memory traffic as about K / d_env of its edges' pair products (K the map's
    columns), and the per-centre route was measured to win from about 0.75 K / d_env edges per
    centre on (l = 1, 16 channels: 27; 64 waters within 5 Å, 55 per atom: energy and forces
    1.24× and a training step 1.34× faster; 32 ethanols, 8 per atom, taking it anyway: 2×
    slower); the padded table is at most twice the edges.
    """
    if slots is None or not layer.per_atom or num_atoms == 0:
        return False
    n_edges, d_env, k = slots.index.shape[0], layer.env_dim, layer.atom_columns
    return 4 * n_edges * d_env >= 3 * k * num_atoms and num_atoms * slots.width <= 2 * n_edges


def atom_maps(env: Tensor, atom_product: Tensor) -> Tensor:
    """Each centre's map from an edge's features to the layer's outputs: the folded product
    contracted with the centre's environment, A[a, (n, i), k] = Σ_j Γ[a, n, j] P[n, j, i, k].
    An edge's outputs are then its features times its centre's A: d_env times fewer
    multiply-adds than the product of its component pairs, and no pair is stored.

    Shapes: env: [n_atoms, mul, d_env], atom_product: [mul, d_env, d_in, K]
        → [n_atoms, mul · d_in, K]
    """
    mul, d_env, d_in, k = atom_product.shape
    maps = torch.bmm(env.transpose(0, 1), atom_product.reshape(mul, d_env, d_in * k))
    return maps.transpose(0, 1).reshape(env.shape[0], mul * d_in, k)  # (channel, component)


def _atom_maps_backward(g_maps: Tensor, atom_product: Tensor) -> Tensor:
    """∂/∂Γ of ⟨g_maps, :func:`atom_maps`(Γ)⟩ (the product constant).

    Shapes: g_maps: [n_atoms, mul · d_in, K], atom_product: [mul, d_env, d_in, K]
        → [n_atoms, mul · d_env]
    """
    mul, d_env, d_in, k = atom_product.shape
    n_atoms = g_maps.shape[0]
    g = g_maps.reshape(n_atoms, mul, d_in * k).transpose(0, 1)  # [mul, n_atoms, d_in · K]
    g_env = torch.bmm(g, atom_product.reshape(mul, d_env, d_in * k).transpose(1, 2))
    return g_env.transpose(0, 1).reshape(n_atoms, mul * d_env)


def _pad(x: Tensor, slots: CentreSlots, num_atoms: int) -> Tensor:
    """Rows of edges into the padded table of their centres (:class:`CentreSlots`).

    Shapes: x: [n_edges, c] → [num_atoms, width, c]
    """
    table = x.new_zeros(num_atoms * slots.width, x.shape[1]).index_copy(0, slots.index, x)
    return table.view(num_atoms, slots.width, x.shape[1])


def _unpad(table: Tensor, slots: CentreSlots) -> Tensor:
    """The inverse of :func:`_pad`: each edge's row.

    Shapes: table: [num_atoms, width, c] → [n_edges, c]
    """
    return table.reshape(-1, table.shape[2]).index_select(0, slots.index)


def layer_product(layer: AllegroLayer, w: _LayerWeights, v, env, dst, num_atoms, slots):
    """A layer's folded product (tensor product and Linear, :class:`~.allegro._Folded`) of each
    edge's features with its centre's environment: per centre where
    :func:`per_atom_product` says so (:func:`atom_maps`), else of the component pairs. Also
    what :func:`_layer_backward` reads: (padded features, maps) per centre, else each edge's
    environment. Differentiable (the fast path's training runs it through autograd).

    Shapes: v: [n_edges, mul, d_in], env: [num_atoms, mul · d_env] (unnormalised)
        → ([n_edges, K], ([num_atoms, width, mul · d_in], [num_atoms, mul · d_in, K])
        or [n_edges, mul, d_env])
    """
    n, mul, d_env = v.shape[0], layer.num_channels, layer.env_dim
    if per_atom_product(layer, slots, num_atoms):
        maps = atom_maps(env.view(num_atoms, mul, d_env), w.atom_product)
        padded = _pad(v.reshape(n, mul * layer.in_dim), slots, num_atoms)
        return _unpad(torch.bmm(padded, maps), slots), (padded, maps)
    env = env.index_select(0, dst).view(n, mul, d_env)
    if layer.dense_pairs:
        outer = v[:, :, :, None] * env[:, :, None, :]
    else:
        outer = _select(v, layer.pair_in) * _select(env, layer.pair_env)
    return outer.reshape(n, mul * layer.num_pairs) @ w.product, env


def _layer_forward(layer: AllegroLayer, w: _LayerWeights, x, v, sh, uc, dst, num_atoms, slots):
    """:meth:`AllegroLayer.fast` without autograd, returning what :func:`_layer_backward` needs."""
    n, mul, d_env = x.shape[0], layer.num_channels, layer.env_dim
    env_w, env_pre = _mlp_forward(x, w.env)
    env_w = env_w.view(n, mul, d_env)
    weighted = (env_w * sh[:, None, :]).view(n, mul * d_env)
    env = weighted.new_zeros(num_atoms, mul * d_env).index_add_(0, dst, weighted)
    out, env = layer_product(layer, w, v, env, dst, num_atoms, slots)
    width = mul * layer.out_dim
    update, pre = _mlp_forward(torch.cat([x, out[:, width:]], dim=-1), w.latent)
    if layer.resnet:
        x_out = torch.addcmul(x * (1.0 / math.sqrt(2.0)), uc[:, None], update)
    else:
        x_out = uc[:, None] * update
    return (
        x_out,
        out[:, :width].view(n, mul, layer.out_dim),
        (x, v, env_w, env_pre, env, update, pre),
    )


def _layer_backward(
    layer: AllegroLayer, w: _LayerWeights, saved, g_x, g_v, sh, uc, dst, num_atoms, slots
):
    """Gradients (x, v, Y, u_c) of ⟨g_x, x_out⟩ + ⟨g_v, v_out⟩ of :func:`_layer_forward`."""
    x, v, env_w, env_pre, env, update, pre = saved
    n, mul, d_env, latent = x.shape[0], layer.num_channels, layer.env_dim, x.shape[1]
    g_uc = (g_x * update).sum(1)
    g_hidden = _mlp_backward(uc[:, None] * g_x, w.latent, pre)
    g_x_in = g_hidden[:, :latent]
    if layer.resnet:
        g_x_in = g_x_in + g_x * (1.0 / math.sqrt(2.0))
    g_v = (
        g_x.new_zeros(n, mul * layer.out_dim)
        if g_v is None
        else g_v.reshape(n, mul * layer.out_dim)
    )
    g_out = torch.cat([g_v, g_hidden[:, latent:]], dim=1)
    if isinstance(env, tuple):  # the product per centre
        padded, maps = env
        g_padded = _pad(g_out, slots, num_atoms)
        g_v_in = _unpad(torch.bmm(g_padded, maps.transpose(1, 2)), slots).view_as(v)
        g_maps = torch.bmm(padded.transpose(1, 2), g_padded)  # [n_atoms, mul · d_in, K]
        g_env_atoms = _atom_maps_backward(g_maps, w.atom_product)
    else:
        g_v_in, g_env_atoms = _pair_backward(layer, w, g_out, v, env, dst, num_atoms)
    g_weighted = g_env_atoms.index_select(0, dst).view(n, mul, d_env)
    g_sh = (g_weighted * env_w).sum(1)
    g_x_in = g_x_in + _mlp_backward(
        (g_weighted * sh[:, None, :]).view(n, mul * d_env), w.env, env_pre
    )
    return g_x_in, g_v_in, g_sh, g_uc


def _pair_backward(layer: AllegroLayer, w: _LayerWeights, g_out, v, env, dst, num_atoms):
    """Gradients (v, Γ of the centres) of ⟨g_out, out⟩ for the product of the component pairs
    (:func:`_layer_forward` per edge; ``env``: each edge's environment)."""
    n, mul, d_env = v.shape[0], layer.num_channels, layer.env_dim
    g_outer = (g_out @ w.product.t()).view(n, mul, layer.num_pairs)
    if layer.dense_pairs:
        g_outer = g_outer.view(n, mul, v.shape[2], d_env)
        g_v_in = (g_outer * env[:, :, None, :]).sum(3)
        g_env = (g_outer * v[:, :, :, None]).sum(2)
    else:
        g_v_in = _add_columns(
            torch.zeros_like(v), layer.pair_in, g_outer * _select(env, layer.pair_env)
        )
        g_env = _add_columns(
            torch.zeros_like(env), layer.pair_env, g_outer * _select(v, layer.pair_in)
        )
    g_env_atoms = g_env.new_zeros(num_atoms, mul * d_env).index_add_(
        0, dst, g_env.view(n, mul * d_env)
    )
    return g_v_in, g_env_atoms


def _network_forward(model, weights, sh, u, uc, radial, pair_species, dst, num_atoms, slots):
    """The edge energies [n_edges] (unscaled) from the edge geometry, without autograd, and
    what :func:`_network_backward` needs."""
    two_body, initial, layer_weights, energy_weights = weights
    n, mul, d_sh = sh.shape[0], model.config.num_tensor_features, sh.shape[1]
    t2b, pre_2b = _mlp_forward(torch.cat([pair_species, radial], dim=-1), two_body)
    x = u[:, None] * t2b
    w0, pre_0 = _mlp_forward(x, initial)
    w0 = w0.view(n, mul, d_sh)
    v = w0 * sh[:, None, :]
    saved = []
    for layer, w in zip(model.layers, layer_weights):
        x, v, keep = _layer_forward(layer, w, x, v, sh, uc, dst, num_atoms, slots)
        saved.append(keep)
    energy, pre_e = _mlp_forward(x, energy_weights)
    return energy.squeeze(-1), (t2b, pre_2b, w0, pre_0, saved, pre_e)


def _network_backward(
    model, weights, saved, g_energy, sh, u, uc, pair_species, dst, num_atoms, slots
):
    """Gradients (Y, u, u_c, B u) of ⟨g_energy, edge energies⟩ of :func:`_network_forward`."""
    t2b, pre_2b, w0, pre_0, saved, pre_e = saved
    two_body, initial, layer_weights, energy_weights = weights
    g_x = _mlp_backward(g_energy[:, None], energy_weights, pre_e)
    g_v, g_sh, g_uc = None, torch.zeros_like(sh), torch.zeros_like(uc)
    for layer, w, keep in reversed(list(zip(model.layers, layer_weights, saved))):
        g_x, g_v, g_sh_l, g_uc_l = _layer_backward(
            layer, w, keep, g_x, g_v, sh, uc, dst, num_atoms, slots
        )
        g_sh += g_sh_l
        g_uc += g_uc_l
    n = sh.shape[0]
    g_sh += (g_v * w0).sum(1)
    g_x = g_x + _mlp_backward(
        (g_v * sh[:, None, :]).reshape(n, g_v.shape[1] * g_v.shape[2]), initial, pre_0
    )
    g_u = (g_x * t2b).sum(1)
    g_pair = _mlp_backward(u[:, None] * g_x, two_body, pre_2b)
    return g_sh, g_u, g_uc, g_pair[:, pair_species.shape[1] :]


class Frozen(NamedTuple):
    """What :func:`energy_and_forces` reads besides the graph, made outside inference mode
    (:meth:`~euclidnn.models.Allegro.energy_and_forces`)."""

    weights: tuple  # (two-body, initial, per layer, edge energy) matrices, constant
    species: Tensor  # [n_atoms] the model's species row of each atom
    pair_species: Tensor  # [n_edges, 2 · S] the species one-hots of each edge's two atoms
    slots: CentreSlots | None  # the edges by centre (None while a trace records)


def energy_and_forces(model: Allegro, frozen: Frozen, graph: Graph) -> tuple[Tensor, Tensor]:
    """Energy per structure and forces of ``model`` with constant weights, the geometry
    (|r|, Y(r̂), u(r), B(r) u(r)), the network, the sums over atoms and the chain rule back to
    the positions all written out: no autograd graph, so it runs in inference mode, where a
    small molecule's few hundred operations cost less each. The same numbers as autograd
    through :meth:`~euclidnn.models.Allegro.atomic_energies` (its reference, in the tests).

    Shapes: graph (n_atoms, n_edges, n_graphs) → ([n_graphs] eV, [n_atoms, 3] eV/Å)
    """
    atom_energy, g_vec = atomic_energies_and_edge_gradient(model, frozen, graph)
    energy = scatter_sum(atom_energy, graph.batch, dim_size=graph.num_graphs)
    return energy, position_forces(graph, g_vec)


def weighted_energy_forces(
    model: Allegro, frozen: Frozen, graph: Graph, weight: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-atom energies E_i, the forces −∂(Σ_i weight_i E_i)/∂R and the cell derivative
    ∂(Σ_i weight_i E_i)/∂cell of one structure, the derivative written by hand (what an
    exported Allegro's ``energy_forces`` traces; LAMMPS passes weight 1 for owned atoms, 0 for
    ghosts).

    The edge vector r_e = R[src] − R[dst] + edge_shift_e · cell, so
    ∂E/∂cell[k, c] = Σ_e edge_shift[e, k] · ∂E/∂r_e[c], i.e. edge_shiftᵀ · ∂E/∂r.

    Shapes: graph (n_atoms, n_edges, one structure), weight: [n_atoms]
        → ([n_atoms] eV, [n_atoms, 3] eV/Å, [3, 3] eV/Å)
    """
    atom_energy, g_vec = atomic_energies_and_edge_gradient(model, frozen, graph, weight)
    return atom_energy, position_forces(graph, g_vec), cell_gradient(graph, g_vec)


def atomic_energies_and_edge_gradient(
    model: Allegro, frozen: Frozen, graph: Graph, weight: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """E_i of every atom and ∂(Σ_i weight_i E_i)/∂(edge vectors) (weight default ones): the
    forward pass and the hand-written backward of :func:`energy_and_forces`. Edge ij's energy
    enters only E_i = s_i (1/√N̄) Σ_j ε_ij + b_i, so the backward's seed on edge ij is
    weight_i · s_i / √N̄.

    Shapes: graph (n_atoms, n_edges), weight: [n_atoms] → ([n_atoms] eV, [n_edges, 3] eV/Å)
    """
    cfg, weights = model.config, frozen.weights
    dst, num_atoms = graph.edge_dst, graph.numbers.shape[0]
    edge_vec = graph.edge_vectors()  # [n_edges, 3] Å
    r = edge_vec.norm(dim=-1)  # [n_edges]
    sh = spherical_harmonics(model.irreps_sh, edge_vec, normalize=True)
    u = polynomial_cutoff(r, cfg.r_max, cfg.polynomial_p)
    basis = bessel_basis(r, cfg.r_max, cfg.num_basis)
    uc = u * (1.0 / math.sqrt(2.0)) if cfg.latent_resnet else u
    edge_energy, saved = _network_forward(
        model, weights, sh, u, uc, basis * u[:, None], frozen.pair_species, dst, num_atoms,
        frozen.slots,
    )  # fmt: skip
    scales = model.scale_shift.scales.to(r.dtype).index_select(0, frozen.species) * model.sum_norm
    atom_energy = scatter_sum(edge_energy, dst, num_atoms) * scales  # E_i = s_i Σ_j ε_ij + b_i
    atom_energy += model.scale_shift.shifts.to(r.dtype).index_select(0, frozen.species)

    seed = scales if weight is None else scales * weight  # ∂(Σ weight_i E_i)/∂(Σ_j ε_ij)
    g_sh, g_u, g_uc, g_radial = _network_backward(
        model, weights, saved, seed.index_select(0, dst), sh, u, uc, frozen.pair_species, dst,
        num_atoms, frozen.slots,
    )  # fmt: skip
    g_u = g_u + (g_uc * (1.0 / math.sqrt(2.0)) if cfg.latent_resnet else g_uc)
    g_r = radial_derivative(r, u, basis, g_u, g_radial, cfg.r_max, cfg.polynomial_p)
    return atom_energy, edge_vector_derivative(edge_vec, r, sh, g_sh, g_r, cfg.lmax)
