import dataclasses

import numpy as np
import pytest
import torch
import torch.utils._pytree as pytree
from ase.build import bulk, molecule

from euclidnn.data import AtomsDataset, Graph, Structure, Targets, collate, make_loader


def random_structures(count, rng):
    structures = []
    for k in range(count):
        if k % 2:
            cell = 3.0 * np.eye(3) + 0.4 * rng.normal(size=(3, 3))
            frac = rng.uniform(size=(1 + k % 4, 3))
            structures.append(
                Structure(
                    numbers=rng.integers(1, 10, len(frac)),
                    positions=frac @ cell,
                    cell=cell,
                    pbc=True,
                    energy=rng.normal(),
                    forces=rng.normal(size=(len(frac), 3)),
                    stress=rng.normal(size=(3, 3)),
                )
            )
        else:
            atoms = molecule(["H2O", "CH4", "NH3"][k % 3])
            structures.append(
                Structure.from_ase(
                    atoms, energy=rng.normal(), forces=rng.normal(size=(len(atoms), 3))
                )
            )
    return structures


def test_collate_equals_one_by_one():
    rng = np.random.default_rng(0)
    structures = random_structures(7, rng)
    graphs = [Graph.from_structure(s, 3.0, torch.float64) for s in structures]
    batch = Graph.from_structures(structures, 3.0, torch.float64)
    assert batch.num_graphs == 7
    assert batch.num_atoms.tolist() == [s.num_atoms for s in structures]
    atom_offset, edge_offset = 0, 0
    for k, g in enumerate(graphs):
        n, e = g.positions.shape[0], g.num_edges
        atoms = slice(atom_offset, atom_offset + n)
        edges = slice(edge_offset, edge_offset + e)
        assert (batch.batch[atoms] == k).all()
        assert torch.equal(batch.positions[atoms], g.positions)
        assert torch.equal(batch.numbers[atoms], g.numbers)
        assert torch.equal(batch.cell[k], g.cell[0])
        assert torch.equal(batch.pbc[k], g.pbc[0])
        assert torch.equal(batch.edge_src[edges], g.edge_src + atom_offset)
        assert torch.equal(batch.edge_dst[edges], g.edge_dst + atom_offset)
        assert torch.equal(batch.edge_shift[edges], g.edge_shift)
        assert torch.allclose(batch.edge_vectors()[edges], g.edge_vectors())
        atom_offset, edge_offset = atom_offset + n, edge_offset + e
    assert atom_offset == batch.positions.shape[0] and edge_offset == batch.num_edges
    # collating batches is associative
    again = collate([collate(graphs[:3]), collate(graphs[3:])])
    for f in dataclasses.fields(Graph):
        if f.name == "_derived":  # the store of derived index structures, not data
            continue
        assert torch.equal(getattr(again, f.name), getattr(batch, f.name)), f.name


def test_edge_vectors_match_numpy_and_lengths_below_cutoff():
    rng = np.random.default_rng(1)
    (s,) = [x for x in random_structures(2, rng) if x.pbc.any()]
    g = Graph.from_structure(s, 4.0, torch.float64)
    src, dst, shift = (t.numpy() for t in (g.edge_src, g.edge_dst, g.edge_shift))
    expected = s.positions[src] - s.positions[dst] + shift @ s.cell
    np.testing.assert_allclose(g.edge_vectors().numpy(), expected, atol=1e-12)
    assert (g.edge_vectors().norm(dim=1) < 4.0).all()
    assert g.edge_shift.dtype == g.positions.dtype
    assert torch.equal(g.edge_shift, g.edge_shift.round())


def test_edge_vectors_gradient_reaches_positions_and_cell():
    g = Graph.from_ase(bulk("Si", "diamond", a=5.43), r_max=4.0, dtype=torch.float64)
    positions = g.positions.clone().requires_grad_()
    cell = g.cell.clone().requires_grad_()
    g = dataclasses.replace(g, positions=positions, cell=cell)
    vec = g.edge_vectors()
    (vec.norm(dim=1) ** 2).sum().backward()
    # d/dR sum |v|^2: analytic 2 v contributions
    expected = torch.zeros_like(positions)
    expected.index_add_(0, g.edge_src, 2 * vec.detach())
    expected.index_add_(0, g.edge_dst, -2 * vec.detach())
    assert torch.allclose(positions.grad, expected)
    expected_cell = torch.einsum("ei,ej->ij", g.edge_shift, 2 * vec.detach())
    assert torch.allclose(cell.grad[0], expected_cell)
    assert cell.grad.abs().max() > 1.0


def test_deformed_scales_edges_and_gives_strain_gradient():
    g = Graph.from_ase([bulk("Cu", "fcc", a=3.6), molecule("H2O")], 3.0, torch.float64)
    eps = torch.zeros(2, 3, 3, dtype=torch.float64)
    eps[0] = torch.tensor([[0.01, 0.02, 0.0], [0.0, -0.01, 0.0], [0.0, 0.0, 0.03]])
    d = g.deformed(g.positions, eps)
    sym = 0.5 * (eps + eps.transpose(1, 2))
    transform = torch.eye(3, dtype=torch.float64) + sym
    expected = torch.einsum("ei,eij->ej", g.edge_vectors(), transform[g.batch[g.edge_dst]])
    assert torch.allclose(d.edge_vectors(), expected)
    # second graph untouched
    assert torch.equal(d.positions[g.batch == 1], g.positions[g.batch == 1])
    # the input graph is not modified
    assert torch.equal(g.cell[0], torch.tensor(bulk("Cu", "fcc", a=3.6).cell.array))
    # gradient of a strain-dependent quantity reaches strain through positions and cell
    strain = torch.zeros(2, 3, 3, dtype=torch.float64, requires_grad=True)
    r2 = (g.deformed(g.positions, strain).edge_vectors() ** 2).sum()
    (grad,) = torch.autograd.grad(r2, strain)
    # d/dε Σ|v(1+ε)|² at ε = 0 = 2 Σ v⊗v, per graph
    vec = g.edge_vectors()
    edge_graph = g.batch[g.edge_dst]
    for k in range(2):
        v = vec[edge_graph == k]
        assert torch.allclose(grad[k], 2 * v.T @ v)


def test_molecule_in_a_box_has_zero_cell():
    atoms = molecule("H2O")
    atoms.center(vacuum=5.0)  # a cell, but not periodic
    g = Graph.from_ase(atoms, 2.0)
    assert torch.equal(g.cell, torch.zeros(1, 3, 3))
    assert g.pbc.tolist() == [[False] * 3] and g.num_edges == 6


def test_to_casts_floats_only():
    g = Graph.from_ase(molecule("CH4"), 2.0, torch.float64).to(dtype=torch.float32)
    assert g.positions.dtype == g.cell.dtype == g.edge_shift.dtype == torch.float32
    assert g.numbers.dtype == g.edge_src.dtype == g.batch.dtype == torch.int64
    assert g.pbc.dtype == torch.bool


def test_to_takes_a_dtype_first_as_tensors_do():
    g = Graph.from_ase(molecule("CH4"), 2.0)
    g64 = g.to(torch.float64)
    assert g64.positions.dtype == g64.cell.dtype == torch.float64
    assert g64.edge_src.dtype == torch.int64
    with pytest.raises(TypeError, match="dtype once"):
        g.to(torch.float64, torch.float32)


def test_derived_data_are_kept_with_the_graph_and_its_copies():
    g = Graph.from_ase(molecule("CH3CH2OH"), 3.0, torch.float64)
    calls = []

    def count(graph):
        calls.append(1)
        return graph.num_edges

    assert g.derived("n", count) == g.derived("n", count) == g.num_edges
    moved = dataclasses.replace(g, positions=g.positions + 1.0)  # same edges: shared
    assert moved.derived("n", count) == g.num_edges and len(calls) == 1
    assert g.deformed(g.positions, torch.zeros(1, 3, 3, dtype=torch.float64)).derived("n", count)
    assert len(calls) == 1
    # other edges, or edges changed in place: computed again, for that graph only
    fewer = dataclasses.replace(g, edge_src=g.edge_src[2:], edge_dst=g.edge_dst[2:],
                                edge_shift=g.edge_shift[2:])  # fmt: skip
    assert fewer.derived("n", count) == g.num_edges - 2 and len(calls) == 2
    assert g.derived("n", count) == g.num_edges and len(calls) == 3
    g.edge_src[0] = g.edge_src[0].item()  # an in-place write bumps the version
    g.derived("n", count)
    assert len(calls) == 4


def test_with_positions_shares_topology_and_derived_data():
    g = Graph.from_ase(molecule("CH3CH2OH"), 3.0, torch.float64)
    pairs = g.edge_pairs()
    moved = g.with_positions(g.positions + 0.05)
    assert moved.edge_src is g.edge_src and moved.cell is g.cell
    assert torch.equal(moved.positions, g.positions + 0.05)
    assert moved.edge_pairs() is pairs  # the store is shared: not computed again
    assert torch.allclose(moved.edge_vectors(), g.edge_vectors())  # a translation
    with pytest.raises(ValueError, match="shape \\(8, 3\\) for a graph of 9 atoms"):
        g.with_positions(g.positions[1:])


def test_edge_pairs_of_int32_edges_and_of_the_graph():
    from euclidnn.data.pairs import edge_pairs

    g = Graph.from_ase(bulk("Si"), 5.0, torch.float64)
    pair_edge, edge_pair = g.edge_pairs()
    assert g.edge_pairs()[0] is pair_edge  # computed once per graph
    p32 = edge_pairs(g.edge_src.int(), g.edge_dst.int(), g.edge_shift)
    assert torch.equal(p32[0], pair_edge) and torch.equal(p32[1], edge_pair)
    assert pair_edge.shape[0] == g.num_edges // 2


def test_graph_is_pytree_and_compiles():
    g = Graph.from_ase([molecule("H2O"), bulk("Si")], 3.0, torch.float64)
    leaves, spec = pytree.tree_flatten(g)
    assert len(leaves) == len(dataclasses.fields(Graph)) - 1  # the derived store is dropped
    assert pytree.tree_unflatten(leaves, spec).num_edges == g.num_edges

    def energy(graph: Graph) -> torch.Tensor:
        r = graph.edge_vectors().norm(dim=1)
        per_graph = torch.zeros(graph.num_graphs, dtype=r.dtype)
        return per_graph.index_add(0, graph.batch[graph.edge_dst], torch.exp(-r))

    compiled = torch.compile(energy, backend="eager", fullgraph=True)
    assert torch.allclose(compiled(g), energy(g))

    class Model(torch.nn.Module):
        def forward(self, graph: Graph) -> torch.Tensor:
            return energy(graph)

    exported = torch.export.export(Model(), (g,))
    assert torch.allclose(exported.module()(g), energy(g))

    t = Targets(energy=torch.ones(2), properties={"dipole": torch.zeros(2, 3)})
    leaves, spec = pytree.tree_flatten(t)
    assert pytree.tree_unflatten(leaves, spec).properties["dipole"].shape == (2, 3)


def test_targets_collate_and_mixed_labels():
    rng = np.random.default_rng(3)
    crystals = [s for s in random_structures(8, rng) if s.pbc.any()]
    targets = Targets.collate([Targets.from_structure(s, torch.float64) for s in crystals])
    assert targets.energy.tolist() == pytest.approx([s.energy for s in crystals])
    assert targets.forces.shape == (sum(s.num_atoms for s in crystals), 3)
    assert torch.equal(targets.stress[1], torch.tensor(crystals[1].stress))
    molecule_targets = Targets.from_structure(random_structures(1, rng)[0])
    assert molecule_targets.stress is None
    # a crystal has stress, a molecule has none: refuse rather than drop it
    with pytest.raises(ValueError, match=r"stress: present for some .*\[1\]"):
        Targets.collate([Targets.from_structure(crystals[0]), molecule_targets])


def test_dataset_and_loader_batches():
    rng = np.random.default_rng(4)
    structures = [s for s in random_structures(10, rng) if not s.pbc.any()]
    data = AtomsDataset(structures, r_max=2.0, dtype=torch.float64)
    batches = list(make_loader(data, batch_size=2, shuffle=True, seed=0))
    assert sum(g.num_graphs for g, _ in batches) == len(structures)
    energies = sorted(e for _, t in batches for e in t.energy.tolist())
    assert energies == pytest.approx(sorted(s.energy for s in structures))
    for g, t in batches:
        assert t.forces.shape == g.positions.shape
        assert t.energy.shape == (g.num_graphs,)


def test_loader_with_worker_process():
    structures = [Structure.from_ase(molecule("CH4"), energy=float(k)) for k in range(4)]
    data = AtomsDataset(structures, r_max=2.0)
    batches = list(make_loader(data, batch_size=3, num_workers=1))
    assert [g.num_graphs for g, _ in batches] == [3, 1]
    assert batches[0][1].energy.tolist() == [0.0, 1.0, 2.0]
    assert batches[0][0].edge_src.max() >= 10  # offset into the third molecule


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_cuda_keeps_values():
    g = Graph.from_ase(bulk("Si"), 3.0, torch.float64)
    t = Targets(energy=torch.ones(1, dtype=torch.float64))
    on_gpu = g.to("cuda", torch.float32)
    assert on_gpu.positions.is_cuda and on_gpu.edge_src.is_cuda and on_gpu.pbc.is_cuda
    assert torch.allclose(on_gpu.edge_vectors().cpu().double(), g.edge_vectors(), atol=1e-5)
    assert t.to("cuda").energy.is_cuda
