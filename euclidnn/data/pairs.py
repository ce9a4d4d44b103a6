"""Undirected edge pairs: each directed edge with its reverse (same length, computed once)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["edge_pairs"]


def edge_pairs(edge_src: Tensor, edge_dst: Tensor, edge_shift: Tensor) -> tuple[Tensor, Tensor]:
    """Group directed edges into undirected pairs: edge (j → i, S) with its reverse (i → j, −S).

    Both edges of a pair have the same length |r_j − r_i + S·cell|, so anything that depends on
    the length alone (radial bases, cutoffs, SchNet's filters) can be computed once per pair and
    expanded with ``pair_values.index_select(0, edge_pair)``. An edge whose reverse is missing is
    a pair of its own; an atom's own periodic images (j = i, shifts S and −S) form one pair.

    Each edge gets the int64 key (src·n + dst)·B³ + (B³ − 1)/2 + S_x·B² + S_y·B + S_z, with
    n = number of atoms (1 + the largest index), s = max |S| over all components and
    B = 2s + 1 (so the shift part lies in 0 … B³ − 1); its reverse's key swaps src and dst and
    negates S, and a pair is identified by the smaller of the two keys. The keys are below
    n² · B³, so they are exact while n² · B³ < 2⁶³ (a ``ValueError`` otherwise): up to 3·10⁹
    atoms without periodic shifts, 10⁶ atoms with |S| ≤ 100, 3·10⁴ atoms with |S| ≤ 1000.
    The representative edge of a pair is its smallest edge index (deterministic).

    Args:
        edge_src, edge_dst: edge endpoints (atom indices).
        edge_shift: lattice translations of ``edge_src``, integer values (any dtype).

    Returns:
        ``(pair_edge, edge_pair)``: the representative edge of each pair, and the pair of each
        edge, so that ``pair_edge[edge_pair[e]]`` is ``e`` or its reverse. Pairs are ordered by key.

    Shapes: edge_src, edge_dst: [n_edges] int64 or int32, edge_shift: [n_edges, 3]
    → pair_edge: [n_pairs] int64, edge_pair: [n_edges] int64

    >>> src, dst = torch.tensor([1, 0, 0, 0]), torch.tensor([0, 1, 0, 0])
    >>> shift = torch.tensor([[0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, -1]])
    >>> pair_edge, edge_pair = edge_pairs(src, dst, shift)
    >>> pair_edge.tolist(), edge_pair.tolist()
    ([2, 0], [1, 1, 0, 0])
    """
    n_edges = edge_src.shape[0]
    device = edge_src.device
    edge_src, edge_dst = edge_src.to(torch.int64), edge_dst.to(torch.int64)
    shift = edge_shift.round().to(torch.int64)  # [n_edges, 3]
    # one branch-free path for every n_edges, 0 included (a 0 joins the maxima), so that a
    # graph traced by torch.jit.trace (the TorchScript export) runs on any edge list
    zero = edge_src.new_zeros(1)
    n_atoms = torch.cat([edge_src, edge_dst, zero]).max() + 1  # 0-d, stays on the device
    s_max = torch.cat([shift.abs().flatten(), zero]).max()
    base = 2 * s_max + 1
    checking = not (torch.compiler.is_compiling() or torch.jit.is_tracing())
    if checking and int(n_atoms) ** 2 * int(base) ** 3 >= 2**63:
        raise ValueError(
            f"edge_pairs: {int(n_atoms)} atoms with shifts up to {int(s_max)} overflow "
            "the int64 edge keys (need n_atoms² · (2·max|shift| + 1)³ < 2⁶³)"
        )
    # S ↦ S_x B² + S_y B + S_z is injective for |S_c| ≤ s_max and odd in S: the key of −S is −key(S)
    shift_key = (shift[:, 0] * base + shift[:, 1]) * base + shift[:, 2]  # |·| ≤ (B³ − 1)/2
    cube = base * base * base
    centre = (cube - 1) // 2
    key = (edge_src * n_atoms + edge_dst) * cube + (centre + shift_key)  # [n_edges], ≥ 0
    key_of_reverse = (edge_dst * n_atoms + edge_src) * cube + (centre - shift_key)
    pair_key, edge_pair = torch.unique(torch.minimum(key, key_of_reverse), return_inverse=True)
    n_pairs = pair_key.shape[0]
    edge_index = torch.arange(n_edges, dtype=torch.int64, device=device)
    # every pair has an edge, so the fill value is never read (include_self=False): a trace
    # may keep n_edges here as a constant of the traced size
    pair_edge = torch.full((n_pairs,), n_edges, dtype=torch.int64, device=device)
    pair_edge = pair_edge.scatter_reduce(
        0, edge_pair, edge_index, reduce="amin", include_self=False
    )
    return pair_edge, edge_pair
