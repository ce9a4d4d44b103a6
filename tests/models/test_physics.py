"""Physics of every potential, one parametrised file (float64): gradients, symmetries, locality,
smoothness, periodic images, batching, tensor outputs, save/load."""

from __future__ import annotations

import json

import pytest
import torch
from ase.build import bulk, molecule
from safetensors.torch import load_file, save_file

from euclidnn.data import Graph, Structure
from euclidnn.models import (
    Allegro,
    AllegroConfig,
    NequIP,
    NequIPConfig,
    SchNet,
    SchNetConfig,
    TensorHead,
    load_model,
    predict,
    save_model,
    symmetric_matrix,
)
from euclidnn.o3 import Irreps
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
    random_o3_elements,
    rotated_graph,
)

R_MAX = 4.0
SPECIES = (1, 6, 8, 14)
SHIFTS = (-13.6, -1029.0, -2041.0, -7870.0)  # eV, so that shifts are exercised


def make_schnet():
    return SchNet(
        SchNetConfig(
            species=SPECIES,
            r_max=R_MAX,
            num_features=16,
            num_interactions=2,
            num_basis=12,
            energy_shifts=SHIFTS,
            energy_scales=0.5,
        )
    )


def make_nequip_l1():
    return NequIP(
        NequIPConfig(
            species=SPECIES,
            r_max=R_MAX,
            lmax=1,
            num_features=4,
            num_layers=2,
            radial_mlp_width=8,
            avg_num_neighbors=6.0,
            energy_shifts=SHIFTS,
        )
    )


def make_nequip_l2_no_parity():
    return NequIP(
        NequIPConfig(
            species=SPECIES,
            r_max=R_MAX,
            lmax=2,
            num_features=4,
            num_layers=3,
            radial_mlp_width=8,
            parity=False,
            energy_scales=2.0,
        )
    )


def make_allegro():
    return Allegro(
        AllegroConfig(
            species=SPECIES,
            r_max=R_MAX,
            num_tensor_features=4,
            latent_dim=16,
            avg_num_neighbors=6.0,
            energy_shifts=SHIFTS,
        )
    )


MODELS = [make_schnet, make_nequip_l1, make_nequip_l2_no_parity, make_allegro]
model_param = pytest.mark.parametrize("make_model", MODELS, ids=lambda f: f.__name__[5:])


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


@model_param
def test_forces_are_gradient(make_model, ethanol):
    assert_forces_are_gradient(make_model(), ethanol)


@model_param
def test_forces_are_gradient_periodic(make_model, silicon):
    assert_forces_are_gradient(make_model(), silicon)


@model_param
def test_stress_is_strain_derivative(make_model, silicon):
    assert_stress_is_strain_derivative(make_model(), silicon)


@model_param
def test_rotation_and_inversion(make_model, ethanol, silicon):
    model = make_model()
    assert_rotation_equivariant(model, ethanol)
    assert_rotation_equivariant(model, silicon, stress=True)


@model_param
def test_translation_and_permutation(make_model, ethanol):
    model = make_model()
    assert_translation_invariant(model, ethanol)
    assert_permutation_equivariant(model, ethanol)


@model_param
def test_batch_consistent(make_model, ethanol, silicon):
    water = _graph(molecule("H2O"), rattle=0.05)
    assert_batch_consistent(make_model(), [ethanol, silicon, water, ethanol])


@model_param
def test_local(make_model):
    assert_local(
        make_model(),
        _structure(molecule("CH3CH2OH"), 0.05),
        _structure(molecule("H2O"), 0.05),
        R_MAX,
    )


@model_param
def test_smooth_at_cutoff(make_model):
    assert_smooth_at_cutoff(make_model(), (6, 8), R_MAX)


@model_param
def test_periodic_images(make_model):
    model = make_model()
    primitive = bulk("Si", "diamond", a=5.43)
    conventional = bulk("Si", "diamond", a=5.43, cubic=True)
    assert_periodic_images_consistent(model, primitive, R_MAX, equivalent=[conventional])
    rattled = primitive.copy()
    rattled.rattle(0.1, seed=2)
    assert_periodic_images_consistent(model, rattled, R_MAX)


@model_param
def test_float32_matches_float64(make_model, ethanol):
    model = make_model().double()
    p64 = predict(model, ethanol)
    p32 = predict(model.float(), ethanol.to(dtype=torch.float32))
    assert p32.energy.dtype == torch.float32
    assert torch.allclose(p32.forces.double(), p64.forces, atol=1e-3)


def test_stress_needs_a_cell(ethanol):
    with pytest.raises(ValueError, match="nonzero volume"):
        predict(make_schnet().double(), ethanol, stress=True)


def test_unknown_species_is_named():
    graph = _graph(molecule("NH3"))
    with pytest.raises(ValueError, match=r"\[7\]"):
        make_schnet().double()(graph)


def test_isolated_atom_energy_is_its_shift():
    graph = Graph.from_structure(Structure([8], [[0.0, 0.0, 0.0]]), R_MAX, torch.float64)
    assert make_nequip_l1().double()(graph).item() == pytest.approx(SHIFTS[2])


def test_training_mode_allows_double_backward(ethanol):
    model = make_nequip_l1().double()
    loss = predict(model, ethanol, training=True).forces.pow(2).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


# ---- equivariant outputs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "irreps_out, lmax", [("1o", 1), ("0e + 2e", 2), ("2x0e + 1o + 1e + 2e", 2)]
)
def test_tensor_head_equivariant(irreps_out, lmax, ethanol):
    trunk = NequIP(
        NequIPConfig(
            species=SPECIES,
            r_max=R_MAX,
            lmax=lmax,
            num_features=4,
            num_layers=3,
            radial_mlp_width=8,
        )
    )
    head = TensorHead(trunk, irreps_out).double()
    irreps = Irreps(irreps_out)
    with torch.no_grad():
        y = head(ethanol)
        assert y.shape == (1, irreps.dim) and y.abs().max() > 1e-6
        for R in random_o3_elements(3):
            y_rot = head(rotated_graph(ethanol, R))
            assert torch.allclose(y_rot, y @ irreps.D_from_matrix(R).T, atol=1e-10)


def test_polarizability_matrix_rotates_as_tensor(ethanol):
    trunk = NequIP(NequIPConfig(species=SPECIES, r_max=R_MAX, lmax=2, num_features=4, num_layers=2))
    head = TensorHead(trunk, "0e + 2e").double()
    with torch.no_grad():
        alpha = symmetric_matrix(head(ethanol))[0]
        assert torch.allclose(alpha, alpha.T)
        R = random_o3_elements(2)[1]
        assert torch.allclose(
            symmetric_matrix(head(rotated_graph(ethanol, R)))[0], R @ alpha @ R.T, atol=1e-10
        )


def test_tensor_head_rejects_missing_irreps():
    trunk = NequIP(NequIPConfig(species=SPECIES, lmax=1, num_features=4, num_layers=2))
    with pytest.raises(ValueError, match="2e"):
        TensorHead(trunk, "0e + 2e")


# ---- save / load ----------------------------------------------------------------------------


@model_param
def test_save_load_round_trip(make_model, ethanol, tmp_path):
    model = make_model().double()
    path = tmp_path / "model.safetensors"
    save_model(model, path)
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert next(loaded.parameters()).dtype == torch.float64
    a, b = predict(model, ethanol), predict(loaded, ethanol)
    assert torch.equal(a.energy, b.energy) and torch.equal(a.forces, b.forces)


def _rewrite(path, **metadata_changes):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    metadata.update(metadata_changes)
    save_file(load_file(str(path)), str(path), metadata=metadata)


def test_load_rejects_mismatched_config(tmp_path):
    path = tmp_path / "m.safetensors"
    model = make_schnet()
    save_model(model, path)
    config = json.loads(json.dumps({**model.config.__dict__}))
    config["num_features"] = 32
    _rewrite(path, config=json.dumps(config))
    with pytest.raises(ValueError, match=r"m\.safetensors.*shape"):
        load_model(path)


def test_load_rejects_unknown_fields_and_foreign_files(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(make_nequip_l1(), path)
    config = json.loads(load_config := _metadata(path)["config"])
    assert load_config
    _rewrite(path, config=json.dumps({**config, "l_max": 2}))
    with pytest.raises(ValueError, match="unknown fields.*l_max"):
        load_model(path)
    _rewrite(path, config=json.dumps({**config, "lmax": 7}))
    with pytest.raises(ValueError, match="lmax"):
        load_model(path)
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a euclidnn model"):
        load_model(path)
    path.write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_model(path)


def _metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata())


def test_load_migrates_format_1(ethanol, tmp_path):
    """Files of format 1 (NequIP layers with their convolution inline) load into today's layout."""
    import re

    model = make_nequip_l1().double()
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    tensors = load_file(str(path))
    inline = {re.sub(r"\.conv\.", ".", k): v for k, v in tensors.items()}
    assert inline.keys() != tensors.keys()  # the old layout differs
    save_file(inline, str(path), metadata={**_metadata(path), "version": "1"})
    loaded = load_model(path)
    a, b = predict(model, ethanol), predict(loaded, ethanol)
    assert torch.equal(a.energy, b.energy) and torch.equal(a.forces, b.forces)
    _rewrite(path, version="0")
    with pytest.raises(ValueError, match="format version '0'"):
        load_model(path)
