"""The probe atom listens but does not speak; Ω is invariant; the batched graph is exact."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from euclidnn.data import Graph, Structure
from euclidnn.interpret import (
    drop_outgoing_edges,
    isosurface_points,
    local_chemical_potential,
    probe_graph,
)
from euclidnn.models import NequIP, NequIPConfig, SchNet, SchNetConfig
from euclidnn.o3.rotations import rand_matrix

R_MAX = 4.0


def schnet():
    config = SchNetConfig(species=(1, 6, 7), num_features=16, num_interactions=2, r_max=R_MAX)
    return SchNet(config).double()


def nequip():
    config = NequIPConfig(species=(1, 6, 7), num_features=4, num_layers=3, lmax=2, r_max=R_MAX)
    return NequIP(config).double()


MODELS = {"schnet": schnet, "nequip": nequip}


def atom_features(model, graph: Graph) -> torch.Tensor:
    """The last features of every atom before the atomic-energy readout."""
    if isinstance(model, NequIP):
        return model.features(graph, num_layers=len(model.layers))[0]
    captured = []
    handle = model.readout1.register_forward_hook(lambda m, inputs, out: captured.append(inputs[0]))
    model(graph)
    handle.remove()
    return captured[0]


@pytest.mark.parametrize("name", MODELS)
def test_probe_does_not_act_back_on_the_molecule(name):
    model = MODELS[name]()
    benzene = Structure.from_ase(molecule("C6H6"))
    n = benzene.num_atoms
    alone = atom_features(model, Graph.from_structure(benzene, R_MAX, torch.float64))
    probe = np.array([[0.3, 0.2, 1.6]])  # above the ring, within r_max of every atom
    with_probe = Structure(np.append(benzene.numbers, 6), np.vstack([benzene.positions, probe]))
    listening = drop_outgoing_edges(Graph.from_structure(with_probe, R_MAX, torch.float64), n)
    features = atom_features(model, listening)
    assert (features[:n] - alone).abs().max() < 1e-12  # molecule unchanged (to rounding)
    # the batched construction gives the same graph for the molecule
    batched = atom_features(model, probe_graph(benzene, probe, 6, R_MAX, torch.float64))
    assert (batched[:n] - alone).abs().max() < 1e-12
    # control: a probe that also sends messages changes them (so the check above can fail)
    speaking = atom_features(model, Graph.from_structure(with_probe, R_MAX, torch.float64))
    assert (speaking[:n] - alone).abs().max() > 1e-3


@pytest.mark.parametrize("name", MODELS)
def test_batched_probes_equal_one_probe_at_a_time(name):
    model = MODELS[name]()
    ethylamine = Structure.from_ase(molecule("CH3CH2NH2"))
    points = np.random.default_rng(1).normal(scale=2.0, size=(7, 3))
    points[-1] = [30.0, 0, 0]  # beyond r_max of every atom: Ω = 0
    omega = local_chemical_potential(model, ethylamine, points, 7, batch_size=3)
    with torch.no_grad():
        molecule_energy = model(Graph.from_structure(ethylamine, R_MAX, torch.float64))[0]
        isolated = model(Graph.from_structure(Structure([7], [[0.0, 0, 0]]), R_MAX, torch.float64))
        for point, value in zip(points, omega):
            whole = Structure(
                np.append(ethylamine.numbers, 7), np.vstack([ethylamine.positions, point])
            )
            graph = drop_outgoing_edges(
                Graph.from_structure(whole, R_MAX, torch.float64), ethylamine.num_atoms
            )
            expected = model(graph)[0] - molecule_energy - isolated[0]
            assert abs(float(value - expected)) < 1e-10
    assert omega[-1].item() == 0.0
    assert omega[:-1].abs().max() > 1e-3  # near the molecule the probe feels it


@pytest.mark.parametrize("name", MODELS)
def test_omega_is_invariant_under_rotating_molecule_and_surface(name):
    model = MODELS[name]()
    pyrazine = Structure(
        [7, 6, 6, 7, 6, 6, 1, 1, 1, 1],
        [
            [-0.80, 1.14, 0.03], [-1.39, -0.12, -0.06], [-0.59, -1.26, -0.09],
            [0.80, -1.14, -0.03], [1.39, 0.12, 0.06], [0.59, 1.26, 0.09],
            [-2.47, -0.21, -0.10], [-1.05, -2.24, -0.16], [2.47, 0.21, 0.10], [1.05, 2.24, 0.16],
        ],
    )  # fmt: skip
    level = np.linalg.norm(pyrazine.positions - pyrazine.positions.mean(0), axis=1).sum() + 10.0
    points, _, _ = isosurface_points(pyrazine.positions, level, num_theta=6, num_phi=12)
    omega = local_chemical_potential(model, pyrazine, points, 6)
    rotation = rand_matrix(dtype=torch.float64).numpy()
    shift = np.array([0.7, -1.3, 2.1])
    moved = Structure(pyrazine.numbers, pyrazine.positions @ rotation.T + shift)
    omega_moved = local_chemical_potential(model, moved, points @ rotation.T + shift, 6)
    assert torch.allclose(omega, omega_moved, atol=1e-10, rtol=0)
    assert omega.std() > 1e-4  # not a constant map


def test_isosurface_points_lie_on_the_surface():
    positions = Structure.from_ase(molecule("C3H8")).positions
    level = 40.0
    points, theta, phi = isosurface_points(positions, level, num_theta=5, num_phi=9)
    sums = np.linalg.norm(points[:, None] - positions[None], axis=-1).sum(-1)
    assert np.allclose(sums, level, atol=1e-9)
    assert points.shape == (45, 3) and len(theta) == 5 and len(phi) == 9
    with pytest.raises(ValueError, match="must exceed"):
        isosurface_points(positions, 1.0)


def test_probe_graph_refuses_periodic_structures_and_unknown_probes():
    crystal = Structure([6], [[0.0, 0, 0]], cell=np.eye(3) * 3, pbc=True)
    with pytest.raises(ValueError, match="periodic"):
        probe_graph(crystal, np.zeros((1, 3)), 6, R_MAX)
    with pytest.raises(ValueError, match=r"\[8\]"):
        local_chemical_potential(schnet(), Structure.from_ase(molecule("CH4")), np.ones((2, 3)), 8)
