"""Allegro (float64): symmetries, gradients, periodic cells, batching, save/load, the CLI, and
strict locality — an atom's energy sees one cutoff sphere, where a 3-layer NequIP sees three."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from euclidnn.cli.__main__ import main
from euclidnn.data import Graph, Structure, collate
from euclidnn.models import (
    Allegro,
    AllegroConfig,
    NequIP,
    NequIPConfig,
    build_model,
    load_model,
    predict,
    save_model,
)
from euclidnn.testing import (
    assert_batch_consistent,
    assert_forces_are_gradient,
    assert_local,
    assert_periodic_images_consistent,
    assert_permutation_equivariant,
    assert_rotation_equivariant,
    assert_smooth_at_cutoff,
    assert_stress_is_strain_derivative,
    assert_translation_invariant,
)

R_MAX = 4.0
SPECIES = (1, 6, 8, 14)
SHIFTS = (-13.6, -1029.0, -2041.0, -7870.0)  # eV


def make_allegro(**changes) -> Allegro:
    """lmax = 2 with both parities and 3 layers: every kind of path is exercised."""
    settings = dict(
        species=SPECIES,
        r_max=R_MAX,
        lmax=2,
        parity=True,
        num_layers=3,
        num_tensor_features=4,
        latent_dim=16,
        two_body_mlp_depth=1,
        edge_energy_width=8,
        avg_num_neighbors=6.0,
        energy_shifts=SHIFTS,
        energy_scales=0.5,
    )
    return Allegro(AllegroConfig(**{**settings, **changes})).double()


def _structure(atoms, rattle=0.0) -> Structure:
    atoms = atoms.copy()
    if rattle:
        atoms.rattle(rattle, seed=1)
    return Structure.from_ase(atoms)


def _graph(atoms, rattle=0.0) -> Graph:
    return Graph.from_structure(_structure(atoms, rattle), R_MAX, torch.float64)


@pytest.fixture
def ethanol():
    return _graph(molecule("CH3CH2OH"), rattle=0.05)


@pytest.fixture
def silicon():  # rattled, non-orthogonal periodic cell
    return _graph(bulk("Si", "diamond", a=5.43), rattle=0.1)


@pytest.mark.parametrize("parity", [True, False])
def test_rotation_and_inversion(parity, ethanol, silicon):
    model = make_allegro(parity=parity)
    assert_rotation_equivariant(model, ethanol)
    assert_rotation_equivariant(model, silicon, stress=True)


def test_translation_and_permutation(ethanol):
    model = make_allegro()
    assert_translation_invariant(model, ethanol)
    assert_permutation_equivariant(model, ethanol)


def test_forces_are_gradient(ethanol, silicon):
    model = make_allegro()
    assert_forces_are_gradient(model, ethanol)
    assert_forces_are_gradient(model, silicon)


def test_stress_is_strain_derivative(silicon):
    assert_stress_is_strain_derivative(make_allegro(), silicon)


def test_batch_consistent(ethanol, silicon):
    water = _graph(molecule("H2O"), rattle=0.05)
    assert_batch_consistent(make_allegro(), [ethanol, silicon, water, ethanol])


def test_smooth_at_cutoff():
    assert_smooth_at_cutoff(make_allegro(), (6, 8), R_MAX)


def test_periodic_images_and_supercell():
    model = make_allegro()
    primitive = bulk("Si", "diamond", a=5.43)
    conventional = bulk("Si", "diamond", a=5.43, cubic=True)
    assert_periodic_images_consistent(model, primitive, R_MAX, equivalent=[conventional])
    rattled = primitive.copy()
    rattled.rattle(0.1, seed=2)
    assert_periodic_images_consistent(model, rattled, R_MAX)


def test_separated_molecules_add_up():
    assert_local(
        make_allegro(),
        _structure(molecule("CH3CH2OH"), 0.05),
        _structure(molecule("H2O"), 0.05),
        R_MAX,
    )


def _nequip_atomic_energies(model: NequIP, graph: Graph) -> torch.Tensor:
    """E_i of a NequIP: its forward pass before the sum over atoms."""
    h, species = model.features(graph, num_layers=len(model.layers))
    return model.scale_shift(model.readout(h).squeeze(-1), species)


def _energy_jacobian(atomic_energies, graph: Graph) -> torch.Tensor:
    """|∂E_i/∂r_k| summed over directions: [n_atoms (i), n_atoms (k)]."""
    positions = graph.positions.detach().requires_grad_(True)
    energies = atomic_energies(dataclasses.replace(graph, positions=positions))
    rows = [torch.autograd.grad(e, positions, retain_graph=True)[0].abs().sum(-1) for e in energies]
    return torch.stack(rows)


def test_atomic_energy_sees_one_cutoff_sphere_where_nequip_sees_three():
    """E_i is unchanged by an atom k beyond r_max of i (even when k is a neighbour of one of
    i's neighbours), for every pair (i, k) of butane; a 3-layer NequIP fails the same check."""
    butane = _structure(molecule("trans-butane"), rattle=0.05)
    graph = Graph.from_structure(butane, R_MAX, torch.float64)
    distance = torch.cdist(graph.positions, graph.positions)  # [n, n] Å
    far = distance > R_MAX + 1e-9
    two_hops = (distance.le(R_MAX).double() @ distance.le(R_MAX).double() > 0) & far
    assert two_hops.any() and far.any()

    allegro = make_allegro()
    assert allegro.num_hops == 1 and allegro.receptive_field == R_MAX
    energies = allegro.atomic_energies(graph)
    assert torch.allclose(energies.sum(), allegro(graph).sum(), rtol=0, atol=1e-9)
    jacobian = _energy_jacobian(allegro.atomic_energies, graph)
    assert jacobian[far].max() == 0.0  # exactly: no arithmetic path from k to E_i
    assert jacobian[~far].max() > 1e-3  # and the atoms inside the sphere do matter

    nequip = NequIP(
        NequIPConfig(species=SPECIES, r_max=R_MAX, num_features=4, num_layers=3, radial_mlp_width=8)
    ).double()
    assert nequip.receptive_field == 3 * R_MAX
    control = _energy_jacobian(lambda g: _nequip_atomic_energies(nequip, g), graph)
    assert control[two_hops].max() > 1e-6  # the control sees beyond one sphere

    # the same as a finite move: k two hops from i (i — j — k) moved away from i, the
    # neighbour list rebuilt; the edges ending at i do not change
    i, k = [int(v) for v in torch.nonzero(two_hops)[0]]
    positions = butane.positions.copy()
    positions[k] += (
        0.3 * (positions[k] - positions[i]) / np.linalg.norm(positions[k] - positions[i])
    )
    moved = Graph.from_structure(Structure(butane.numbers, positions), R_MAX, torch.float64)
    with torch.no_grad():
        assert allegro.atomic_energies(moved)[i].item() == energies[i].item()
        change = (
            _nequip_atomic_energies(nequip, moved)[i] - _nequip_atomic_energies(nequip, graph)[i]
        )
        assert abs(change.item()) > 1e-8


def test_isolated_atom_energy_is_its_shift():
    graph = Graph.from_structure(Structure([8], [[0.0, 0.0, 0.0]]), R_MAX, torch.float64)
    assert make_allegro()(graph).item() == pytest.approx(SHIFTS[2])


def test_training_mode_allows_double_backward(ethanol):
    model = make_allegro()
    loss = predict(model, ethanol, training=True).forces.pow(2).sum()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_interface_and_build_model():
    model = build_model("Allegro", {"species": [1, 8], "lmax": 2, "r_max": 4.5})
    assert isinstance(model, Allegro) and model.config.species == (1, 8)
    assert (model.cutoff, model.num_hops, model.receptive_field) == (4.5, 1, 4.5)
    assert model.species == (1, 8) and model.species_embeddings() is None
    assert model.dtype == torch.float32


@pytest.mark.parametrize(
    "field, value",
    [
        ("lmax", 4),
        ("r_max", 0.0),
        ("num_layers", 0),
        ("num_tensor_features", 0),
        ("latent_dim", 0),
        ("latent_mlp_depth", -1),
        ("polynomial_p", 1),
        ("avg_num_neighbors", -2.0),
        ("species", (1, 1)),
    ],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"AllegroConfig.{field}"):
        AllegroConfig(**{field: value})


def test_save_load_round_trip(ethanol, tmp_path):
    model = make_allegro()
    path = tmp_path / "allegro.safetensors"
    save_model(model, path)
    loaded = load_model(path)
    assert type(loaded) is Allegro and loaded.config == model.config
    a, b = predict(model, ethanol), predict(loaded, ethanol)
    assert torch.equal(a.energy, b.energy) and torch.equal(a.forces, b.forces)


def test_cli_trains_and_evaluates_allegro(tmp_path):
    out = tmp_path / "run"
    args = ["ethanol", "--model", "allegro", "--index", ":60", "--n-valid", "10"]
    status = main(["train", *args, "--max-epochs", "1", "--threads", "1", "--out", str(out)])
    assert status == 0
    model = load_model(out / "model.safetensors")
    assert isinstance(model, Allegro) and model.config.avg_num_neighbors > 1
    metrics = tmp_path / "m.json"
    status = main(
        ["evaluate", str(out / "model.safetensors"), "ethanol", "--index", "1990:", "--json",
         str(metrics)]
    )  # fmt: skip
    assert status == 0
    values = json.loads(metrics.read_text())
    assert values["n_structures"] == 10 and np.isfinite(values["forces_mae_meV_per_A"])


# ---- the fast path (AllegroLayer.fast) against the reference (EUCLIDNN_NATIVE=0) ------------


def _both(monkeypatch, run):
    """``run()`` on the fast path, then on the reference."""
    monkeypatch.setenv("EUCLIDNN_NATIVE", "1")
    fast = run()
    monkeypatch.setenv("EUCLIDNN_NATIVE", "0")
    reference = run()
    monkeypatch.setenv("EUCLIDNN_NATIVE", "1")
    return fast, reference


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"parity": False, "lmax": 3},
        {"lmax": 1, "num_layers": 2},
        {"lmax": 0},
        {"num_layers": 1, "latent_resnet": False},
        {"two_body_mlp_depth": 0, "latent_mlp_depth": 0, "avg_num_neighbors": None},
    ],
    ids=["l2-3layers", "l3-even", "l1", "l0", "1layer-noresnet", "no-hidden"],
)
def test_fast_path_is_the_reference(monkeypatch, changes, ethanol, silicon):
    """Energies, atomic energies, forces, stress and (training) weight gradients of the fast
    path equal the reference's up to rounding."""
    torch.manual_seed(0)
    model = make_allegro(**changes)
    for graph in (ethanol, silicon, collate([ethanol, silicon])):
        a, b = _both(
            monkeypatch, lambda graph=graph: predict(model, graph, stress=bool(graph.pbc.all()))
        )
        _close(a.energy, b.energy)
        _close(a.forces, b.forces)
        a, b = _both(monkeypatch, lambda graph=graph: predict(model, graph))  # energy_and_forces
        _close(a.energy, b.energy)
        _close(a.forces, b.forces)
        a, b = _both(monkeypatch, lambda graph=graph: model.atomic_energies(graph))
        _close(a, b)

    def weight_grads():
        model.zero_grad()
        predict(model, ethanol, training=True).forces.pow(2).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(*_both(monkeypatch, weight_grads)):
        _close(a, b)


def test_fast_path_float32_and_odd_inputs(monkeypatch, ethanol):
    """float32, int32 and strided edge indices, a graph without edges and one without atoms:
    the fast path runs them all, with the reference's numbers."""
    torch.manual_seed(0)
    model = make_allegro(lmax=1).float()
    graph = collate([ethanol, _graph(molecule("H2O"))]).to(torch.float32)
    a, b = _both(monkeypatch, lambda: predict(model, graph))
    torch.testing.assert_close(a.forces, b.forces, rtol=1e-4, atol=1e-5)
    narrow = dataclasses.replace(
        graph, edge_src=graph.edge_src.int(), edge_dst=graph.edge_dst.int()
    )
    strided = dataclasses.replace(
        graph,
        edge_src=torch.stack([graph.edge_src] * 2, 1)[:, 0],
        edge_dst=torch.stack([graph.edge_dst] * 2, 1)[:, 1],
        positions=torch.cat([graph.positions, graph.positions], 1)[:, :3],
    )
    assert not strided.edge_dst.is_contiguous() and not strided.positions.is_contiguous()
    for g in (narrow, strided):
        c = predict(model, g)
        torch.testing.assert_close(c.energy, a.energy, rtol=0, atol=1e-5)
        torch.testing.assert_close(c.forces, a.forces, rtol=0, atol=1e-5)
    lonely = Graph.from_structure(Structure([8, 1], [[0, 0, 0], [9.0, 0, 0]]), R_MAX, torch.float32)
    empty = dataclasses.replace(
        lonely,
        positions=lonely.positions[:0],
        numbers=lonely.numbers[:0],
        batch=lonely.batch[:0],
        num_atoms=torch.zeros_like(lonely.num_atoms),
    )
    for g in (lonely, empty):
        for training in (False, True):
            a, b = _both(monkeypatch, lambda g=g, t=training: predict(model, g, training=t))
            assert torch.equal(a.energy, b.energy) and torch.equal(a.forces, b.forces)


def test_fast_layer_is_the_layer():
    """AllegroLayer.fast on channel-major features is AllegroLayer.forward on e3nn's layout."""
    from euclidnn.models.allegro import AllegroLayer, _channel_major

    torch.manual_seed(0)
    layer = AllegroLayer("3x0e + 3x1o + 3x1e", "3x0e + 3x1o + 3x2e", lmax=2, latent_dim=8)
    layer = layer.double()
    n_edges, n_atoms = 11, 4
    latents, sh = torch.randn(n_edges, 8, dtype=torch.float64), torch.randn(n_edges, 9).double()
    features = torch.randn(n_edges, layer.irreps_in.dim, dtype=torch.float64)
    cutoff, dst = torch.rand(n_edges).double(), torch.randint(0, n_atoms, (n_edges,))
    x, v = layer(latents, features, sh, cutoff, dst, n_atoms)
    cm = features[:, _channel_major(layer.irreps_in)].view(n_edges, 3, -1)
    x_fast, v_fast = layer.fast(latents, cm, sh, cutoff / 2**0.5, dst, n_atoms)
    _close(x_fast, x)
    _close(v_fast.reshape(n_edges, -1), v[:, _channel_major(layer.irreps_out)])


def test_centre_slots_give_each_edge_its_own_row_of_its_centre():
    """Random centres (int64 and int32): every edge its own row, inside its centre's block of
    ``width`` rows, in list order within a centre; width = the most edges of one centre."""
    from euclidnn.models.allegro_forces import centre_slots

    torch.manual_seed(0)
    dst = torch.randint(0, 7, (50,))
    dst[dst == 3] = 2  # a centre without edges
    for edges in (dst, dst.int()):
        slots = centre_slots(edges, 9)
        counts = torch.bincount(dst, minlength=9)
        assert slots.width == int(counts.max()) and slots.index.unique().numel() == 50
        assert torch.equal(slots.index // slots.width, dst)
        for a in range(9):
            assert torch.equal(slots.index[dst == a] % slots.width, torch.arange(int(counts[a])))
    empty = centre_slots(dst[:0], 4)
    assert empty.width == 0 and empty.index.shape == (0,)


def test_product_per_centre_and_per_edge_are_the_reference(monkeypatch):
    """The layers multiply per centre where that is cheaper and per edge where the padded
    table would not be (one crowded centre among many lonely atoms): both routes, in the fast
    path, the hand-written forces and training, equal the reference."""
    from euclidnn.models.allegro_forces import centre_slots, per_atom_product

    torch.manual_seed(0)
    model = make_allegro(lmax=1, num_layers=2)
    first = model.layers[0]
    crowded = Structure.from_ase(molecule("C6H6"))  # 12 atoms within 4 Å of one another
    lonely = [[20.0 + 9.0 * k, 0.0, 0.0] for k in range(40)]
    crowd = Graph.from_structure(
        Structure([*crowded.numbers.tolist(), *[1] * 40], [*crowded.positions.tolist(), *lonely]),
        R_MAX,
        torch.float64,
    )
    ethanol = _graph(molecule("CH3CH2OH"), rattle=0.05)
    chosen = []
    for graph in (ethanol, crowd):
        n_atoms = graph.numbers.shape[0]
        chosen.append(per_atom_product(first, centre_slots(graph.edge_dst, n_atoms), n_atoms))
        for training in (False, True):
            a, b = _both(monkeypatch, lambda g=graph, t=training: predict(model, g, training=t))
            _close(a.energy, b.energy)
            _close(a.forces, b.forces)
    assert chosen == [True, False] and not per_atom_product(model.layers[1], None, 9)


def test_construction_draws_only_the_parameters():
    """The fast path's constants draw nothing from the RNG: a seed gives the weights it gave
    before the fast path existed (the parameters, in order, are all that is drawn)."""
    torch.manual_seed(0)
    model = make_allegro()
    after = torch.rand(3)
    torch.manual_seed(0)
    for p in model.parameters():
        torch.randn(p.shape)
    assert torch.equal(after, torch.rand(3))


def test_hand_written_path_runs_and_leaves_nothing_behind(monkeypatch):
    """predict takes the hand-written path (inference mode inside); its results and what it
    kept with the graph still serve autograd and in-place updates afterwards."""
    from euclidnn.models import allegro_forces

    monkeypatch.setenv("EUCLIDNN_NATIVE", "1")  # (PyTorch only: it runs without a compiler)
    calls, run = [], allegro_forces.energy_and_forces
    monkeypatch.setattr(allegro_forces, "energy_and_forces", lambda *a: calls.append(1) or run(*a))
    torch.manual_seed(0)
    model = make_allegro(lmax=1)
    graph = _graph(molecule("CH3CH2OH"))  # nothing kept with it yet
    fast = predict(model, graph)
    assert calls == [1] and not fast.forces.is_inference()
    fast.forces.mul_(2.0)  # an inference tensor would refuse this
    trained = predict(model, graph, training=True)  # saves the kept tensors for backward
    trained.forces.pow(2).sum().backward()
    torch.testing.assert_close(fast.forces / 2, trained.forces.detach(), rtol=1e-10, atol=1e-10)
    assert calls == [1]


def test_coincident_atoms_give_nan_forces_as_the_reference(monkeypatch, ethanol):
    """Atom 1 moved onto atom 0 after the graph was built (a Structure refuses such atoms): the
    pair has no direction, so the two atoms' forces are NaN on the hand-written path as on the
    reference (it gave 3e12), the other atoms' forces and the energy equal."""
    torch.manual_seed(0)
    model = make_allegro(lmax=1)
    positions = ethanol.positions.clone()
    positions[1] = positions[0]
    graph = ethanol.with_positions(positions)
    fast, reference = _both(monkeypatch, lambda: predict(model, graph))
    _close(fast.energy, reference.energy)
    assert torch.equal(fast.forces.isnan(), reference.forces.isnan())
    assert fast.forces[:2].isnan().all()
    _close(fast.forces[2:], reference.forces[2:])
