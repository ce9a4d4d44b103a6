"""Undirected edge pairs (`edge_pairs`) and SchNet's per-pair filters, against brute force."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from ase.build import bulk, molecule
from torch import nn

from euclidnn.data import Graph
from euclidnn.data.pairs import edge_pairs
from euclidnn.models import SchNet, SchNetConfig, predict, shifted_softplus
from euclidnn.nn.cutoff import cosine_cutoff
from euclidnn.nn.radial import gaussian_basis
from euclidnn.nn.scatter import scatter_sum


def assert_pairs_match_brute_force(edge_src, edge_dst, edge_shift) -> int:
    """Check (pair_edge, edge_pair) against a Python reference; return the number of pairs."""
    pair_edge, edge_pair = edge_pairs(edge_src, edge_dst, edge_shift)
    assert pair_edge.dtype == edge_pair.dtype == torch.int64
    edges = [
        (s, d, tuple(sh))
        for s, d, sh in zip(edge_src.tolist(), edge_dst.tolist(), edge_shift.long().tolist())
    ]

    def reverse(e):
        s, d, sh = e
        return (d, s, tuple(-x for x in sh))

    # brute force: a pair is the set of edges equal to an edge or to its reverse
    group_of = {}
    for index, e in enumerate(edges):
        group_of.setdefault(min(e, reverse(e)), []).append(index)
    assert pair_edge.shape[0] == len(group_of)
    assert edge_pair.shape[0] == len(edges)
    for members in group_of.values():
        pair = {edge_pair[m].item() for m in members}
        assert len(pair) == 1, f"edges {members} are one undirected pair, got pairs {pair}"
        assert pair_edge[pair.pop()].item() == min(members)  # the representative is the first edge
    assert len(set(edge_pair.tolist())) == len(group_of)  # different groups, different pairs
    return len(group_of)


def _ethanol(dtype=torch.float64) -> Graph:
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    return Graph.from_ase(atoms, r_max=5.0, dtype=dtype)


def _silicon(dtype=torch.float64) -> Graph:
    atoms = bulk("Si")  # primitive fcc cell (non-orthogonal), 2 atoms: each sees its own images
    atoms.rattle(0.05, seed=2)
    return Graph.from_ase(atoms, r_max=5.0, dtype=dtype)


def test_molecule_pairs_are_half_the_edges():
    g = _ethanol()
    assert not g.edge_shift.any()
    assert assert_pairs_match_brute_force(g.edge_src, g.edge_dst, g.edge_shift) == g.num_edges // 2


def test_periodic_cell_with_self_images():
    g = _silicon()
    self_images = g.edge_src == g.edge_dst
    assert self_images.any() and g.edge_shift.abs().max() >= 1
    assert assert_pairs_match_brute_force(g.edge_src, g.edge_dst, g.edge_shift) == g.num_edges // 2
    pair_edge, edge_pair = edge_pairs(g.edge_src, g.edge_dst, g.edge_shift)
    # an image S of atom i pairs with its image −S, never with itself
    for e in torch.nonzero(self_images).flatten().tolist():
        partner = [f for f in torch.nonzero(edge_pair == edge_pair[e]).flatten().tolist() if f != e]
        assert len(partner) == 1
        assert g.edge_src[partner[0]] == g.edge_src[e]
        assert torch.equal(g.edge_shift[partner[0]], -g.edge_shift[e])


def test_large_shifts():
    g = Graph.from_ase(bulk("Si", "diamond", a=5.43), r_max=9.0, dtype=torch.float64)
    assert g.edge_shift.abs().max() >= 2
    assert assert_pairs_match_brute_force(g.edge_src, g.edge_dst, g.edge_shift) == g.num_edges // 2


def test_batch_of_two_graphs():
    g = Graph.from_ase([molecule("CH3CH2OH"), bulk("Si")], r_max=5.0, dtype=torch.float64)
    assert assert_pairs_match_brute_force(g.edge_src, g.edge_dst, g.edge_shift) == g.num_edges // 2
    pair_edge, edge_pair = edge_pairs(g.edge_src, g.edge_dst, g.edge_shift)
    graph_of_edge = g.batch[g.edge_dst]
    assert torch.equal(
        graph_of_edge[pair_edge][edge_pair], graph_of_edge
    )  # pairs stay inside a graph


def test_edge_without_reverse_is_its_own_pair():
    g = _ethanol()
    keep = torch.arange(1, g.num_edges)  # drop edge 0: its reverse is left alone
    src, dst, shift = g.edge_src[keep], g.edge_dst[keep], g.edge_shift[keep]
    assert assert_pairs_match_brute_force(src, dst, shift) == g.num_edges // 2
    pair_edge, edge_pair = edge_pairs(src, dst, shift)
    lonely = torch.nonzero((src == g.edge_dst[0]) & (dst == g.edge_src[0])).flatten()
    assert lonely.numel() == 1
    assert (edge_pair == edge_pair[lonely]).sum() == 1


def test_random_edges_with_signed_shifts():
    generator = torch.Generator().manual_seed(3)
    src = torch.randint(0, 5, (60,), generator=generator)
    dst = torch.randint(0, 5, (60,), generator=generator)
    shift = torch.randint(-7, 8, (60, 3), generator=generator).double()
    # add the reverses of half of them, shuffled in
    src, dst, shift = (
        torch.cat([src, dst[:30]]),
        torch.cat([dst, src[:30]]),
        torch.cat([shift, -shift[:30]]),
    )
    order = torch.randperm(90, generator=generator)
    assert_pairs_match_brute_force(src[order], dst[order], shift[order])


def test_no_edges_and_overflow():
    empty = torch.zeros(0, dtype=torch.int64)
    pair_edge, edge_pair = edge_pairs(empty, empty, torch.zeros(0, 3))
    assert pair_edge.shape == edge_pair.shape == (0,)
    # near the bound of the int64 keys (10⁶ atoms, |S| ≤ 100) the pairs are still exact
    src, dst = (
        torch.tensor([0, 999_999, 999_999, 999_999, 0]),
        torch.tensor([999_999, 0, 999_999, 999_999, 999_999]),
    )
    shift = torch.tensor(
        [[100.0, -100, 7], [-100, 100, -7], [-100, -100, -100], [100, 100, 100], [-100, 100, -7]]
    )
    assert assert_pairs_match_brute_force(src, dst, shift) == 3
    far = torch.tensor([0, 10**7])
    with pytest.raises(ValueError, match="overflow"):
        edge_pairs(far, far.flip(0), torch.tensor([[1000.0, 0, 0], [-1000.0, 0, 0]]))


# ---- SchNet: filters per pair == filters per directed edge --------------------------------------


class PerEdgeSchNet(nn.Module):
    """The same SchNet (same modules and parameters), filters computed per directed edge."""

    def __init__(self, model: SchNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, graph: Graph) -> torch.Tensor:
        m, cfg = self.model, self.model.config
        edge_len = graph.edge_vectors().norm(dim=-1)  # [n_edges]
        edge_radial = gaussian_basis(edge_len, cfg.r_max, cfg.num_basis, gamma=cfg.gamma)
        edge_cutoff = cosine_cutoff(edge_len, cfg.r_max)
        species = m.species_index(graph.numbers)
        h = m.embedding(species).to(edge_len.dtype)
        for it in m.interactions:
            w = it.filter2(shifted_softplus(it.filter1(edge_radial))) * edge_cutoff[:, None]
            x = it.in2filter(h)
            messages = scatter_sum(x[graph.edge_src] * w, graph.edge_dst, dim_size=h.shape[0])
            h = h + it.out2(shifted_softplus(it.out1(messages)))
        atom_energy = m.scale_shift(
            m.readout2(shifted_softplus(m.readout1(h))).squeeze(-1), species
        )
        return scatter_sum(atom_energy, graph.batch, dim_size=graph.num_graphs)


@pytest.mark.parametrize(
    "make_graph",
    [
        _ethanol,
        _silicon,
        lambda dtype: Graph.from_ase([molecule("CH3CH2OH"), bulk("Si")], r_max=5.0, dtype=dtype),
    ],
    ids=["ethanol", "silicon", "batch"],
)
def test_schnet_matches_per_edge_reference(make_graph):
    model = SchNet(
        SchNetConfig(species=(1, 6, 8, 14), num_features=16, num_basis=12, energy_scales=0.7)
    ).double()
    graph = make_graph(torch.float64)
    stress = bool(graph.pbc.all())
    ours = predict(model, graph, stress=stress)
    reference = predict(PerEdgeSchNet(model), graph, stress=stress)
    torch.testing.assert_close(ours.energy, reference.energy, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.forces, reference.forces, rtol=0, atol=1e-12)
    if stress:
        torch.testing.assert_close(ours.stress, reference.stress, rtol=0, atol=1e-12)
    assert ours.forces.abs().max() > 1e-3  # the comparison is not vacuous


def test_schnet_with_an_edge_without_reverse_matches_reference():
    model = SchNet(SchNetConfig(species=(1, 6, 8), num_features=16, num_basis=12)).double()
    g = _ethanol()
    keep = torch.arange(1, g.num_edges)
    g = replace(
        g, edge_src=g.edge_src[keep], edge_dst=g.edge_dst[keep], edge_shift=g.edge_shift[keep]
    )
    ours, reference = predict(model, g), predict(PerEdgeSchNet(model), g)
    torch.testing.assert_close(ours.energy, reference.energy, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.forces, reference.forces, rtol=0, atol=1e-12)
