"""An exported SchNet, NequIP or Allegro file's ``energy_forces``: the model's hand-written
energy and forces, traced (SchNet: its whole-model C kernel as the custom op
``euclidnn::schnet_energy_forces``, euclidnn/export/schnet.py; NequIP:
euclidnn/models/nequip_forces.py, each convolution partial the custom op ``euclidnn::uvu_conv``
at its slot, euclidnn/export/nequip.py; Allegro: euclidnn/models/allegro_forces.py, stock
operations only, euclidnn/export/allegro.py), against
:func:`euclidnn.models.predict` and against autograd of the same file's ``forward``: per-atom
energies, forces and the cell derivative (hence the stress) in float64 and float32, for a
molecule and a periodic triclinic cell; the per-atom weight (LAMMPS's owned 1 / ghost 0)
seeding the backward pass; N = 0, E = 0 and strided inputs; ``--portable`` and
``EUCLIDNN_NATIVE=0`` leave the method out. (The SchNet op's own checks: test_schnet_op.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from euclidnn import kernels
from euclidnn.data import Graph
from euclidnn.export import export, load_exported
from euclidnn.models import (
    Allegro,
    AllegroConfig,
    NequIP,
    NequIPConfig,
    SchNet,
    SchNetConfig,
    predict,
)

SPECIES = (1, 6, 8)
R_MAX = 3.5
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}
SCALES = dict(energy_scales=(0.5, 1.5, 2.0), energy_shifts=(-1.0, -2.0, -3.0))
# name → (a small model with random scales and shifts, a smaller one, the file's custom ops)
MODELS = {
    "schnet": (
        lambda: SchNet(SchNetConfig(species=SPECIES, num_features=16, num_basis=8, r_max=R_MAX,
                                    **SCALES)),
        lambda: SchNet(SchNetConfig(species=(1, 8), num_features=4, num_interactions=1)),
        ["euclidnn::schnet_energy_forces", "euclidnn::uvu_conv"],
    ),
    "nequip": (
        lambda: NequIP(NequIPConfig(species=SPECIES, r_max=R_MAX, lmax=2, num_features=8,
                                    num_layers=3, radial_mlp_width=16, **SCALES)),
        lambda: NequIP(NequIPConfig(species=(1, 8), r_max=3.0, num_features=4, num_layers=1)),
        ["euclidnn::uvu_conv"],
    ),
    "allegro": (
        lambda: Allegro(AllegroConfig(species=SPECIES, r_max=R_MAX, lmax=2, num_layers=2,
                                      num_tensor_features=4, latent_dim=16, edge_energy_width=8,
                                      avg_num_neighbors=6.0, **SCALES)),
        lambda: Allegro(AllegroConfig(species=(1, 8), r_max=3.0, num_tensor_features=4,
                                      latent_dim=8)),
        [],
    ),
}  # fmt: skip
# a kernel that does not build here (no C compiler): that model's file has no energy_forces
NO_KERNEL = {
    "schnet": not kernels.schnet_kernel_available(),
    "nequip": not kernels.fused_conv_available(torch.zeros(1)),
    "allegro": False,
}


def _model(name: str):
    torch.manual_seed(0)
    return MODELS[name][0]().double()


@pytest.fixture(autouse=True)
def _native_on(monkeypatch):
    """The paths are on whatever the shell says (make test's EUCLIDNN_NATIVE=0 pass skips
    export/ anyway)."""
    monkeypatch.setenv("EUCLIDNN_NATIVE", "1")


def _periodic() -> Atoms:
    rng = np.random.default_rng(3)
    cell = [[6.8, 0, 0], [1.6, 6.4, 0], [-0.9, 1.2, 7.1]]
    while True:
        atoms = Atoms(rng.choice(["H", "C", "O"], 20), scaled_positions=rng.uniform(size=(20, 3)),
                      cell=cell, pbc=True)  # fmt: skip
        if atoms.get_all_distances(mic=True)[np.triu_indices(20, 1)].min() > 0.9:
            return atoms


STRUCTURES = {"ethanol": lambda: molecule("CH3CH2OH"), "periodic": _periodic}


@pytest.fixture(scope="module", params=list(MODELS))
def files(request, tmp_path_factory):
    """dtype → (model in that dtype, loaded module) of one kind of model; exported once each."""
    name = request.param
    if NO_KERNEL[name]:
        pytest.skip(f"no C kernel (no compiler): a {name} file has no energy_forces")
    made = {}
    for dtype in (torch.float64, torch.float32):
        path = tmp_path_factory.mktemp(name) / "model.pt"
        with pytest.MonkeyPatch.context() as patch:  # (module scope: before the autouse one)
            patch.setenv("EUCLIDNN_NATIVE", "1")
            metadata = export(_model(name), path, dtype=dtype)
        assert metadata["ops"] == MODELS[name][2]
        module = load_exported(path)[0]
        assert module._c._has_method("energy_forces")
        made[dtype] = (_model(name).to(dtype), module)
    return made


def _inputs(graph: Graph, dtype):
    return (graph.positions, graph.numbers, graph.edge_src, graph.edge_dst,
            graph.edge_shift.to(dtype), graph.cell[0])  # fmt: skip


def _close(actual, expected, rtol):
    scale = float(expected.abs().max()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=0, atol=rtol * max(scale, 1.0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_energy_forces_equal_predict(files, structure, dtype):
    """Per-atom energies, their sum, forces and the stress (W from positions, forces and the
    cell derivative, as the LAMMPS pair style computes it) equal ``predict``'s."""
    model, module = files[dtype]
    atoms = STRUCTURES[structure]()
    graph = Graph.from_ase(atoms, r_max=model.cutoff, dtype=dtype)
    periodic = bool(atoms.pbc.all())
    want = predict(model, graph, forces=True, stress=periodic)
    energies, forces, cell_grad = module.energy_forces(*_inputs(graph, dtype))
    _close(energies, model.atomic_energies(graph).detach(), RTOL[dtype])
    _close(energies.sum().reshape(1), want.energy.detach(), RTOL[dtype])
    _close(forces, want.forces.detach(), RTOL[dtype])
    if periodic:  # stress = −W / V with W = Σ r ⊗ F − cellᵀ ∂E/∂cell
        cell = graph.cell[0]
        virial = graph.positions.T @ forces - cell.T @ cell_grad
        stress = -virial / torch.linalg.det(cell)
        _close(stress, want.stress[0].detach(), RTOL[dtype])
        assert bool(cell_grad.abs().max() > 0)  # the shifted edges did contribute
    else:
        assert cell_grad.abs().sum() == 0


def test_weight_gives_the_forces_of_the_owned_atoms_only(files):
    """Weight 1 on some atoms, 0 on the rest (LAMMPS's owned atoms and ghosts): the forces are
    −∂(Σ_owned E_i)/∂R on every atom and the cell derivative ∂(Σ_owned E_i)/∂cell, as autograd
    of ``forward`` gives them, and differ from those of all atoms' energies (a seed that
    ignored the weight would fail here)."""
    _, module = files[torch.float64]
    graph = Graph.from_ase(_periodic(), r_max=R_MAX, dtype=torch.float64)
    inputs = _inputs(graph, torch.float64)
    owned = torch.arange(graph.positions.shape[0]) < 8
    energies, forces, cell_grad = module.energy_forces(*inputs, owned.double())
    positions = inputs[0].clone().requires_grad_(True)
    cell = inputs[5].clone().requires_grad_(True)
    atom_energy = module(positions, *inputs[1:5], cell)
    grad, grad_cell = torch.autograd.grad(atom_energy[owned].sum(), (positions, cell))
    _close(energies, atom_energy.detach(), 1e-10)
    _close(forces, -grad, 1e-10)
    _close(cell_grad, grad_cell, 1e-10)
    _, all_forces, all_cell_grad = module.energy_forces(*inputs)
    assert float((all_forces - forces).abs().max()) > 1e-3
    assert float((all_cell_grad - cell_grad).abs().max()) > 1e-3
    assert float(forces[~owned].abs().max()) > 1e-3  # ghosts get forces too


def test_no_atoms_no_edges_and_odd_inputs(files):
    """N = 0, E = 0 (one atom), strided positions: the numbers of the plain inputs; bad input
    is an error with a message."""
    model, module = files[torch.float64]
    empty = torch.zeros(0, dtype=torch.int64)
    energies, forces, cell_grad = module.energy_forces(torch.zeros(0, 3, dtype=torch.float64),
                                                       empty, empty, empty)  # fmt: skip
    assert energies.shape == (0,) and forces.shape == (0, 3) and cell_grad.abs().sum() == 0
    one = module.energy_forces(torch.zeros(1, 3, dtype=torch.float64), torch.tensor([8]), empty,
                               empty)  # fmt: skip
    _close(one[0], model.atomic_energies(Graph.from_ase(molecule("O"), R_MAX, torch.float64)).detach(), 1e-10)  # fmt: skip
    assert one[1].shape == (1, 3) and one[1].abs().sum() == 0

    graph = Graph.from_ase(molecule("CH3CH2OH"), r_max=R_MAX, dtype=torch.float64)
    plain = module.energy_forces(*_inputs(graph, torch.float64))
    wide = torch.zeros(graph.positions.shape[0], 6, dtype=torch.float64)
    wide[:, ::2] = graph.positions  # a strided view
    args = list(_inputs(graph, torch.float64))
    args[0] = wide[:, ::2]
    for got, want in zip(module.energy_forces(*args), plain):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    n = graph.positions.shape[0]
    with pytest.raises(Exception, match="weight must have shape"):
        module.energy_forces(*_inputs(graph, torch.float64), torch.ones(n + 1, dtype=torch.float64))
    with pytest.raises(Exception, match="out of range"):
        module.energy_forces(graph.positions, graph.numbers, graph.edge_src + n, graph.edge_dst)


@pytest.mark.parametrize("name", list(MODELS))
def test_portable_and_native_off_leave_the_method_out(name, tmp_path, monkeypatch):
    """``--portable`` and ``EUCLIDNN_NATIVE=0`` at export: no ``energy_forces`` (autograd only)."""
    model = MODELS[name][1]()
    export(model, tmp_path / "portable.pt", portable=True)
    assert not load_exported(tmp_path / "portable.pt")[0]._c._has_method("energy_forces")
    monkeypatch.setenv("EUCLIDNN_NATIVE", "0")
    metadata = export(model, tmp_path / "native_off.pt")
    assert metadata["ops"] == []
    assert not load_exported(tmp_path / "native_off.pt")[0]._c._has_method("energy_forces")
