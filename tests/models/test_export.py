"""The TorchScript export (euclidnn/export/torchscript.py): what the LAMMPS pair style reads.

Every model (SchNet, NequIP with lmax 1 and 2, Allegro; random weights; float64 and float32)
is exported — traced on a small cluster of its own species — and the loaded file's per-atom
energies, summed, and their autograd forces are compared with :func:`euclidnn.models.predict`
on ethanol and on a 60-atom water cluster (sizes the trace never saw): float64 to 1e-10 and
float32 to 1e-5 of the largest value. Also: no atoms, no edges, the metadata, errors for files
that are not exports, unknown atomic numbers and malformed inputs; the custom op
``euclidnn::uvu_conv`` in the default export of NequIP and SchNet and none in a portable one
(the same numbers), old (version 2) files, and files that call an op this process lacks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from euclidnn import kernels
from euclidnn.data import Graph
from euclidnn.export import FORMAT, METADATA_FILE, export, load_exported
from euclidnn.models import (
    Allegro,
    AllegroConfig,
    NequIP,
    NequIPConfig,
    SchNet,
    SchNetConfig,
    TensorHead,
    TensorHeadConfig,
    predict,
)

SPECIES = (1, 6, 8)
MODELS = {
    "schnet": lambda: SchNet(SchNetConfig(species=SPECIES, num_features=16, num_basis=8)),
    "nequip-l1": lambda: NequIP(NequIPConfig(species=SPECIES, num_features=8, num_layers=2)),
    "nequip-l2": lambda: NequIP(
        NequIPConfig(species=SPECIES, lmax=2, num_features=4, num_layers=2, energy_shifts=-1.5)
    ),
    "allegro": lambda: Allegro(
        AllegroConfig(species=SPECIES, num_tensor_features=4, latent_dim=8, energy_scales=2.0)
    ),
}
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}
EMPTY = torch.zeros(0, dtype=torch.int64)
# the fused kernels run here: exports record their custom op (else the reference, ops = [])
KERNELS_ON = (
    os.environ.get("EUCLIDNN_NATIVE", "1") != "0" and kernels.conv.LIBRARY.get() is not None
)


def water_cluster(num_molecules: int = 20, spacing: float = 3.0) -> Atoms:
    """``num_molecules`` randomly rotated waters on a cubic grid ``spacing`` Å apart."""
    rng = np.random.default_rng(0)
    cluster = Atoms()
    side = int(np.ceil(num_molecules ** (1 / 3)))
    for k in range(num_molecules):
        water = molecule("H2O")
        water.rotate(rng.uniform(0, 360), rng.normal(size=3))
        water.translate(spacing * np.array(np.unravel_index(k, (side,) * 3), dtype=float))
        cluster += water
    return cluster


STRUCTURES = {"ethanol": lambda: molecule("CH3CH2OH"), "water-60": water_cluster}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model name, dtype) → (model in that dtype, path of its export); made once each."""
    made = {}

    def get(name: str, dtype: torch.dtype):
        if (name, dtype) not in made:
            torch.manual_seed(0)
            model = MODELS[name]().double()
            path = tmp_path_factory.mktemp("export") / f"{name}.pt"
            export(model, path, dtype=dtype)  # the float64 model, exported in dtype
            made[name, dtype] = (model.to(dtype), path)
        return made[name, dtype]

    return get


def energies_and_forces(module, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
    """As the C++ caller: per-atom energies, their sum's autograd forces."""
    positions = graph.positions.detach().requires_grad_(True)
    atom_energy = module(positions, graph.numbers, graph.edge_src, graph.edge_dst)
    (grad,) = torch.autograd.grad(atom_energy.sum(), positions)
    return atom_energy.detach(), -grad


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    scale = float(expected.abs().max()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=0, atol=rtol * max(scale, 1.0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("structure", list(STRUCTURES))
@pytest.mark.parametrize("name", list(MODELS))
def test_energies_and_forces_match_predict(exported, name, structure, dtype):
    model, path = exported(name, dtype)
    module, metadata = load_exported(path)
    graph = Graph.from_ase(STRUCTURES[structure](), model.cutoff, dtype)
    reference = predict(model, graph)
    atom_energy, forces = energies_and_forces(module, graph)
    assert atom_energy.shape == (graph.positions.shape[0],) and atom_energy.dtype == dtype
    assert_close(atom_energy.sum().reshape(1), reference.energy, RTOL[dtype])
    assert_close(forces, reference.forces, RTOL[dtype])
    assert_close(atom_energy, model.atomic_energies(graph).detach(), RTOL[dtype])


@pytest.mark.parametrize("name", list(MODELS))
def test_atomic_energies_sum_to_the_energy(name):
    """forward is the scatter_sum of atomic_energies: the same numbers, bit for bit."""
    torch.manual_seed(0)
    model = MODELS[name]().double()
    graph = Graph.from_ase([molecule("CH3CH2OH"), molecule("H2O")], model.cutoff, torch.float64)
    atom_energy = model.atomic_energies(graph)
    by_structure = torch.zeros(2, dtype=torch.float64).index_add(0, graph.batch, atom_energy)
    assert torch.equal(model(graph), by_structure)
    water = Graph.from_ase(molecule("H2O"), model.cutoff, torch.float64)
    assert torch.equal(model(water), model.atomic_energies(water).sum(0, keepdim=True))


@pytest.mark.parametrize("name", list(MODELS))
def test_no_atoms_and_no_edges(exported, name):
    model, path = exported(name, torch.float64)
    module, _ = load_exported(path)
    positions = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    atom_energy = module(positions, EMPTY, EMPTY, EMPTY)
    assert atom_energy.shape == (0,)
    (grad,) = torch.autograd.grad(atom_energy.sum(), positions)
    assert grad.shape == (0, 3)
    # one isolated oxygen: no edges; its energy is the model's, its force zero
    graph = Graph.from_ase(Atoms("O", positions=[[1.0, 2.0, 3.0]]), model.cutoff, torch.float64)
    atom_energy, forces = energies_and_forces(module, graph)
    torch.testing.assert_close(atom_energy, model.atomic_energies(graph).detach())
    assert torch.equal(forces, torch.zeros(1, 3, dtype=torch.float64))


def test_metadata(exported):
    _, path = exported("nequip-l1", torch.float32)
    _, metadata = load_exported(path)
    assert metadata == {
        "format": FORMAT,
        "format_version": 4,  # 2: edge_shift and cell; 3: ops; 4: energy_forces
        "model": "nequip",
        "ops": ["euclidnn::uvu_conv"] if KERNELS_ON else [],
        "species": [1, 6, 8],
        "symbols": ["H", "C", "O"],
        "cutoff": 5.0,
        "num_hops": 2,
        "receptive_field": 10.0,
        "dtype": "float32",
        "units": {"energy": "eV", "length": "Å", "forces": "eV/Å"},
        "euclidnn_version": metadata["euclidnn_version"],
    }
    _, path = exported("allegro", torch.float64)
    _, metadata = load_exported(path)
    assert (metadata["model"], metadata["num_hops"], metadata["receptive_field"]) == (
        "allegro",
        1,
        5.0,
    )
    assert metadata["dtype"] == "float64"


def test_files_that_are_not_exports(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a model\n")
    with pytest.raises(ValueError, match="notes.pt: not a TorchScript file"):
        load_exported(text)
    plain = tmp_path / "plain.pt"  # TorchScript, but not ours
    with warnings.catch_warnings():  # PyTorch 2.13 marks torch.jit deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(plain))
    with pytest.raises(ValueError, match="plain.pt: not a euclidnn export"):
        load_exported(plain)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_exported(tmp_path / "missing.pt")


def test_bad_inputs_raise(exported):
    _, path = exported("schnet", torch.float64)
    module, _ = load_exported(path)
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    src, dst = torch.tensor([0, 1]), torch.tensor([1, 0])
    with pytest.raises(Exception, match="atomic number 92 is not among the model's species"):
        module(positions, torch.tensor([1, 92]), src, dst)
    with pytest.raises(Exception, match="atomic number 300 is not among"):
        module(positions, torch.tensor([300, 1]), src, dst)
    with pytest.raises(Exception, match="edge index 2 out of range for 2 atoms"):
        module(positions, torch.tensor([1, 8]), src, torch.tensor([2, 0]))
    with pytest.raises(Exception, match="positions must be float64"):
        module(positions.float(), torch.tensor([1, 8]), src, dst)
    with pytest.raises(Exception, match="numbers must be int64"):
        module(positions, torch.tensor([1, 8], dtype=torch.int32), src, dst)


def test_export_refuses_a_property_head(tmp_path):
    trunk = NequIPConfig(species=SPECIES, num_features=4, num_layers=2)
    head = TensorHead.from_config(TensorHeadConfig(trunk=trunk, irreps_out="1o"))
    with pytest.raises(ValueError, match="not an energy"):
        export(head, tmp_path / "head.pt")
    assert not (tmp_path / "head.pt").exists()


def test_export_leaves_the_model_alone(tmp_path):
    torch.manual_seed(0)
    model = MODELS["schnet"]().double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export(model, tmp_path / "m.pt", dtype=torch.float32)
    assert model.dtype == torch.float64 and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


def test_int32_edges_are_refused_not_misread(exported):
    _, path = exported("allegro", torch.float64)
    module, _ = load_exported(path)
    graph = Graph.from_ase(molecule("H2O"), 5.0, torch.float64)
    narrow = dataclasses.replace(graph, edge_src=graph.edge_src.int())
    with pytest.raises(Exception, match="int64"):
        module(narrow.positions, narrow.numbers, narrow.edge_src, narrow.edge_dst)


def _resave(path, target, drop=(), **changes) -> None:
    """``path``'s module saved again at ``target`` with its metadata changed."""
    module, metadata = load_exported(path)
    metadata = {k: v for k, v in {**metadata, **changes}.items() if k not in drop}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(module, str(target), _extra_files={METADATA_FILE: json.dumps(metadata)})


@pytest.mark.skipif(
    not KERNELS_ON, reason="the fused kernels are off (EUCLIDNN_NATIVE=0 or no C compiler)"
)
@pytest.mark.parametrize("name", ["nequip-l2", "schnet"])
def test_default_export_calls_the_kernel_op_and_portable_does_not(tmp_path, name):
    """The default export records the convolution as ``euclidnn::uvu_conv`` (in the graph and
    the code of the file), ``portable=True`` as plain PyTorch; both give ``predict``'s numbers."""
    torch.manual_seed(0)
    model = MODELS[name]().double()
    graph = Graph.from_ase(water_cluster(), model.cutoff, torch.float64)
    reference = predict(model, graph)
    results = {}
    for portable in (False, True):
        path = tmp_path / f"{portable}.pt"
        written = export(model, path, portable=portable)
        module, metadata = load_exported(path)
        calls = "euclidnn::uvu_conv" in str(module.inlined_graph)
        in_code = any("ops.euclidnn.uvu_conv" in getattr(m, "code", "") for m in module.modules())
        assert calls == in_code == (not portable), (portable, calls, in_code)
        ops = ["euclidnn::uvu_conv"]
        if name == "schnet":  # and its whole-model kernel, in the method energy_forces
            ops = ["euclidnn::schnet_energy_forces", *ops]
        assert hasattr(module, "energy_forces") == (not portable)  # (SchNet's op, NequIP's path)
        assert metadata["ops"] == written["ops"] == ([] if portable else ops)
        results[portable] = energies_and_forces(module, graph)
        assert_close(results[portable][0].sum().reshape(1), reference.energy, 1e-10)
        assert_close(results[portable][1], reference.forces, 1e-10)
    for a, b in zip(results[False], results[True]):
        assert_close(a, b, 1e-10)


def test_a_model_without_the_convolution_needs_no_op(exported):
    _, path = exported("allegro", torch.float64)
    module, metadata = load_exported(path)
    assert metadata["ops"] == [] and "euclidnn::" not in str(module.inlined_graph)


def test_version_2_files_load_and_unknown_ops_are_named(exported, tmp_path):
    _, path = exported("allegro", torch.float64)
    _resave(path, tmp_path / "old.pt", drop=("ops",), format_version=2)
    _, metadata = load_exported(tmp_path / "old.pt")
    assert metadata["format_version"] == 2 and "ops" not in metadata
    _resave(path, tmp_path / "v3.pt", format_version=3)
    assert load_exported(tmp_path / "v3.pt")[1]["format_version"] == 3
    _resave(path, tmp_path / "future.pt", format_version=5)
    with pytest.raises(
        ValueError, match="future.pt: export format version 5, this euclidnn reads 2, 3, 4"
    ):
        load_exported(tmp_path / "future.pt")
    _resave(path, tmp_path / "needs.pt", ops=["euclidnn::not_an_op"])
    with pytest.raises(ValueError, match=r"needs.pt: calls the custom op\(s\) euclidnn::not_an_op"):
        load_exported(tmp_path / "needs.pt")
