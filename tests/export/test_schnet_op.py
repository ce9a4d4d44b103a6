"""An exported SchNet file's ``energy_forces`` (the whole-model C kernel as the custom op
``euclidnn::schnet_energy_forces``, euclidnn/export/schnet.py) against
:func:`euclidnn.models.predict` and against autograd of the same file's ``forward``: per-atom
energies, forces and the cell derivative (hence the stress) in float64 and float32, periodic;
the per-atom weight (LAMMPS's owned 1 / ghost 0) seeding the forces; and the op's checks on bad
input (errors, never a crash; int32, strided and empty inputs answer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from euclidnn import kernels
from euclidnn.data import Graph
from euclidnn.export import export, load_exported
from euclidnn.models import SchNet, SchNetConfig, predict

SPECIES = (1, 6, 8)
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}
pytestmark = pytest.mark.skipif(
    os.environ.get("EUCLIDNN_NATIVE", "1") == "0" or kernels.schnet.LIBRARY.get() is None,
    reason="the SchNet kernel is off (EUCLIDNN_NATIVE=0 or no C compiler / BLAS)",
)


def _model() -> SchNet:
    torch.manual_seed(0)
    config = SchNetConfig(species=SPECIES, num_features=16, num_basis=8, r_max=3.5,
                          energy_shifts=(-1.0, -2.0, -3.0))  # fmt: skip
    return SchNet(config).double()


def _periodic() -> Atoms:
    rng = np.random.default_rng(3)
    cell = [[6.8, 0, 0], [1.6, 6.4, 0], [-0.9, 1.2, 7.1]]
    while True:
        atoms = Atoms(rng.choice(["H", "C", "O"], 20), scaled_positions=rng.uniform(size=(20, 3)),
                      cell=cell, pbc=True)  # fmt: skip
        if atoms.get_all_distances(mic=True)[np.triu_indices(20, 1)].min() > 0.9:
            return atoms


STRUCTURES = {"ethanol": lambda: molecule("CH3CH2OH"), "periodic": _periodic}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """dtype → (model in that dtype, loaded module); exported once each."""
    made = {}
    for dtype in (torch.float64, torch.float32):
        path = tmp_path_factory.mktemp("schnet") / "model.pt"
        metadata = export(_model(), path, dtype=dtype)
        assert "euclidnn::schnet_energy_forces" in metadata["ops"]
        made[dtype] = (_model().to(dtype), load_exported(path)[0])
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


def test_weight_gives_the_forces_of_the_owned_atoms_only(files):
    """Weight 1 on some atoms, 0 on the rest (LAMMPS's owned atoms and ghosts): the forces are
    −∂(Σ_owned E_i)/∂R on every atom, as autograd of ``forward`` gives them, and differ from the
    forces of all atoms' energies (a kernel that ignored the weight would fail here)."""
    _, module = files[torch.float64]
    graph = Graph.from_ase(_periodic(), r_max=3.5, dtype=torch.float64)
    inputs = _inputs(graph, torch.float64)
    owned = torch.arange(graph.positions.shape[0]) < 8
    weight = owned.double()
    energies, forces, cell_grad = module.energy_forces(*inputs, weight)
    positions = inputs[0].clone().requires_grad_(True)
    cell = inputs[5].clone().requires_grad_(True)
    atom_energy = module(positions, *inputs[1:5], cell)
    grad, grad_cell = torch.autograd.grad(atom_energy[owned].sum(), (positions, cell))
    _close(energies, atom_energy.detach(), 1e-10)
    _close(forces, -grad, 1e-10)
    _close(cell_grad, grad_cell, 1e-10)
    _, all_forces, _ = module.energy_forces(*inputs)
    assert float((all_forces - forces).abs().max()) > 1e-3
    assert float(forces[~owned].abs().max()) > 1e-3  # ghosts get forces too


def test_no_atoms_no_edges_and_odd_inputs(files):
    """N = 0, E = 0, int32 edges, strided positions: the same numbers as the plain inputs."""
    model, module = files[torch.float64]
    empty = torch.zeros(0, dtype=torch.int64)
    energies, forces, cell_grad = module.energy_forces(torch.zeros(0, 3, dtype=torch.float64),
                                                       empty, empty, empty)  # fmt: skip
    assert energies.shape == (0,) and forces.shape == (0, 3) and cell_grad.abs().sum() == 0
    one = module.energy_forces(torch.zeros(1, 3, dtype=torch.float64), torch.tensor([8]), empty,
                               empty)  # fmt: skip
    _close(
        one[0],
        model.atomic_energies(Graph.from_ase(molecule("O"), 3.5, torch.float64)).detach(),
        1e-10,
    )
    assert one[1].abs().sum() == 0

    graph = Graph.from_ase(molecule("CH3CH2OH"), r_max=3.5, dtype=torch.float64)
    plain = module.energy_forces(*_inputs(graph, torch.float64))
    wide = torch.zeros(graph.positions.shape[0], 6, dtype=torch.float64)
    wide[:, ::2] = graph.positions  # a strided view
    args = list(_inputs(graph, torch.float64))
    args[0] = wide[:, ::2]
    for got, want in zip(module.energy_forces(*args), plain):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def _op_args(dtype=torch.float64):
    """A valid call of the op on ethanol (periodic shifts zero), as a dict."""
    model = _model().to(dtype)
    graph = Graph.from_ase(molecule("CH3CH2OH"), r_max=3.5, dtype=dtype)
    pair_edge, edge_pair = graph.edge_pairs()
    weights = model.kernel_weights()
    params = [*weights[:7], *(w for block in weights.interactions for w in block)]
    mu = torch.linspace(0, 3.5, 8, dtype=dtype)
    n = graph.positions.shape[0]
    return dict(positions=graph.positions, species=model.species_index(graph.numbers),
                edge_src=graph.edge_src, edge_dst=graph.edge_dst, edge_pair=edge_pair,
                pair_edge=pair_edge, edge_shift=graph.edge_shift.to(dtype), cell=graph.cell[0],
                weight=torch.ones(n, dtype=dtype), mu=mu, params=params, gamma=2.0, r_max=3.5)  # fmt: skip


def bad_calls() -> dict[str, dict]:
    """Invalid calls of the op (each a changed copy of :func:`_op_args`), shared with the C++
    test (tests/export/test_ops_cpp.py)."""
    base = _op_args()
    n = base["positions"].shape[0]

    def changed(**kw):
        return {**base, **kw}

    swapped = base["pair_edge"].clone()
    swapped[[0, 1]] = swapped[[1, 0]]
    return {
        "float32 positions": changed(positions=base["positions"].float()),
        "positions [N, 2]": changed(positions=base["positions"][:, :2]),
        "float species": changed(species=base["species"].double()),
        "species out of range": changed(species=base["species"] + 5),
        "src out of range": changed(edge_src=base["edge_src"] + n),
        "dst negative": changed(edge_dst=base["edge_dst"] - n),
        "pair out of range": changed(edge_pair=base["edge_pair"] + 1000),
        "pair_edge out of range": changed(pair_edge=base["pair_edge"] + 10000),
        "pairs not the edges' own": changed(pair_edge=swapped),
        "weight [N + 1]": changed(weight=torch.ones(n + 1, dtype=torch.float64)),
        "float32 weight": changed(weight=base["weight"].float()),
        "cell [3]": changed(cell=torch.zeros(3, dtype=torch.float64)),
        "shift [E, 2]": changed(edge_shift=base["edge_shift"][:, :2]),
        "too few params": changed(params=base["params"][:10]),
        "a param of the wrong shape": changed(params=[base["params"][0].T, *base["params"][1:]]),
        "float32 params": changed(params=[p.float() for p in base["params"]]),
        "mu of the wrong length": changed(mu=base["mu"][:5]),
    }


def run_bad_calls() -> dict[str, str]:
    answers = {}
    for name, kwargs in bad_calls().items():
        try:
            torch.ops.euclidnn.schnet_energy_forces(*kwargs.values())
            answers[name] = "no error"
        except (ValueError, TypeError, IndexError, RuntimeError) as err:
            answers[name] = type(err).__name__
    return answers


def test_the_op_refuses_bad_input_without_crashing():
    """Every bad call in a subprocess: it exits normally, each raising a Python error."""
    script = textwrap.dedent(
        f"""
        import importlib.util, json, torch
        import euclidnn.export
        spec = importlib.util.spec_from_file_location("cases", {__file__!r})
        cases = importlib.util.module_from_spec(spec); spec.loader.exec_module(cases)
        print(json.dumps(cases.run_bad_calls()))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    answers = json.loads(run.stdout.strip().splitlines()[-1])
    assert "no error" not in answers.values(), answers
    assert answers["src out of range"] == answers["species out of range"] == "IndexError"
    assert answers["float species"] == "TypeError"
    assert answers["pairs not the edges' own"] == "ValueError"


def test_int32_indices_answer_as_int64():
    base = _op_args()
    want = torch.ops.euclidnn.schnet_energy_forces(*base.values())
    int32 = {k: v.int() if k in ("species", "edge_src", "edge_dst", "edge_pair", "pair_edge")
             else v for k, v in base.items()}  # fmt: skip
    for got, w in zip(torch.ops.euclidnn.schnet_energy_forces(*int32.values()), want):
        torch.testing.assert_close(got, w, rtol=0, atol=0)
