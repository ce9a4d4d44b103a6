"""The ASE calculator: same numbers as predict(), forces and stress are derivatives of the
energy, and the kept neighbour list gives the forces of a fresh one."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.md.verlet import VelocityVerlet
from ase.units import fs

from euclidnn.data import Graph
from euclidnn.md import Calculator
from euclidnn.models import predict, save_model


@pytest.mark.parametrize("system", ["ethanol", "periodic_box"])
def test_calculator_equals_predict(schnet, system, request):
    atoms = request.getfixturevalue(system)
    atoms.calc = Calculator(schnet)
    out = predict(
        schnet, Graph.from_ase(atoms, r_max=4.0, dtype=torch.float64), stress=atoms.pbc.all()
    )
    assert atoms.get_potential_energy() == pytest.approx(out.energy.item(), abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), out.forces.numpy(), atol=1e-12)


def test_forces_are_finite_differences_of_the_energy(schnet, ethanol):
    ethanol.calc = Calculator(schnet)
    forces = ethanol.get_forces()
    step = 1e-5
    for atom, axis in [(0, 0), (2, 1), (8, 2), (5, 0)]:
        energies = []
        for sign in (1, -1):
            displaced = ethanol.copy()
            displaced.positions[atom, axis] += sign * step
            displaced.calc = Calculator(schnet)
            energies.append(displaced.get_potential_energy())
        assert -(energies[0] - energies[1]) / (2 * step) == pytest.approx(
            forces[atom, axis], abs=1e-7
        )


def test_stress_is_the_strain_derivative(schnet, periodic_box):
    periodic_box.calc = Calculator(schnet)
    stress = periodic_box.get_stress(voigt=False)
    volume = periodic_box.get_volume()
    step = 1e-5
    for i, j in [(0, 0), (1, 2), (0, 1), (2, 2)]:
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[i, j] += 0.5 * sign * step
            strain[j, i] += 0.5 * sign * step
            deformed = periodic_box.copy()
            deformed.set_cell(periodic_box.cell.array @ strain, scale_atoms=True)
            deformed.calc = Calculator(schnet)
            energies.append(deformed.get_potential_energy())
        assert (energies[0] - energies[1]) / (2 * step) / volume == pytest.approx(
            stress[i, j], abs=1e-8
        )


def test_the_kept_neighbour_list_gives_the_forces_of_a_fresh_one(schnet, periodic_box):
    """MD of a periodic box where pairs cross r_max: with a skin of 0.5 Å the list is rebuilt
    rarely, and every step's forces equal those of a list built for that step."""
    periodic_box.set_velocities(np.random.default_rng(0).normal(0, 0.15, (len(periodic_box), 3)))
    periodic_box.calc = Calculator(schnet, skin=0.5)
    fresh = Calculator(schnet, skin=0.0)
    dynamics = VelocityVerlet(periodic_box, 1.0 * fs)
    crossings = set()
    for _ in range(60):
        dynamics.run(1)
        graph = periodic_box.calc.graph(periodic_box)
        crossings.add(graph.num_edges)
        np.testing.assert_allclose(
            periodic_box.get_forces(), fresh.get_forces(periodic_box), atol=1e-12
        )
    assert 1 < periodic_box.calc.rebuilds < 30, periodic_box.calc.rebuilds
    assert fresh.rebuilds == 60
    assert len(crossings) > 1  # edges did enter or leave the cutoff sphere


def test_steps_on_the_same_edges_share_the_derived_data(schnet, ethanol):
    """Between neighbour-list changes, each step's graph is the last one with new positions
    (Graph.with_positions): its edge pairs are computed once, not per step."""
    calculator = Calculator(schnet, skin=1.0)
    first = calculator.graph(ethanol)
    pairs = first.edge_pairs()
    ethanol.positions += np.random.default_rng(0).normal(0, 0.01, ethanol.positions.shape)
    second = calculator.graph(ethanol)
    assert second.edge_src is first.edge_src and second.edge_pairs() is pairs
    assert not torch.equal(second.positions, first.positions)


def test_float32_model_float64_positions_and_model_files(tmp_path, ethanol, schnet_factory):
    model = schnet_factory(torch.float32)
    save_model(model, tmp_path / "model.safetensors")
    from_file = Calculator(tmp_path / "model.safetensors")
    as_float64 = Calculator(tmp_path / "model.safetensors", dtype=torch.float64)
    assert from_file.dtype == torch.float32 and as_float64.dtype == torch.float64
    forces32 = from_file.get_forces(ethanol)
    forces64 = as_float64.get_forces(ethanol)
    assert forces32.dtype == np.float64
    np.testing.assert_allclose(forces32, forces64, atol=1e-4)
    Calculator(model, dtype=torch.float64)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is not cast


def test_bad_inputs_are_named(tmp_path, schnet, ethanol):
    with pytest.raises(ValueError, match=r"elements \[14\].*not known to the model.*\[1, 6, 8\]"):
        Calculator(schnet).get_forces(Atoms("SiH4", positions=np.eye(5, 3) * 1.5))
    close = ethanol.copy()
    close.positions[3] = close.positions[2] + [0.01, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"C2H6O: atoms 2 \(O\) and 3 \(H\) are 0.01 Å apart"):
        Calculator(schnet).get_forces(close)
    calculator = Calculator(schnet, skin=1.0)
    calculator.get_forces(ethanol)
    ethanol.positions[4] = np.nan  # a run that blew up: the kept neighbour list must not hide it
    with pytest.raises(ValueError, match=r"C2H6O: atom 4 \(H\) has NaN or infinite coordinates"):
        calculator.get_forces(ethanol)
    with pytest.raises(ValueError, match=r"device 'cuda:99'.*use cpu"):
        Calculator(schnet, device="cuda:99")
    not_a_model = tmp_path / "model.safetensors"
    not_a_model.write_text("hello")
    with pytest.raises(ValueError, match="model.safetensors: not a safetensors file"):
        Calculator(not_a_model)
    with pytest.raises(ValueError, match="not periodic"):
        Calculator(schnet).get_stress(ethanol)
