"""NPT (ASE's Martyna–Tobias–Klein integrators): the cell follows the pressure, in the right
direction and units; the pressure the run uses is −∂E/∂V of the model plus the kinetic term;
MTK's conserved energy is conserved; the run folder carries volume, density and pressure; bad
input is one line naming the option."""

import json

import ase.io
import numpy as np
import pytest
from ase import units

from euclidnn.cli.__main__ import main
from euclidnn.md import Calculator, MDConfig, read_log, run_md
from euclidnn.md.run import density
from euclidnn.models import save_model


def virial_pressure(model, atoms, step: float = 1e-5) -> float:
    """−∂E/∂V in GPa by central finite differences of the model's energy under isotropic
    scaling of the cell with the atoms (no stress involved): the engine-independent truth."""
    energies = []
    for sign in (1, -1):
        scaled = atoms.copy()
        scaled.set_cell(atoms.cell.array * (1 + sign * step), scale_atoms=True)
        scaled.calc = Calculator(model)
        energies.append(scaled.get_potential_energy())
    volume = atoms.get_volume()
    dv = volume * ((1 + step) ** 3 - (1 - step) ** 3)
    return -(energies[0] - energies[1]) / dv / units.GPa


def npt(**overrides) -> MDConfig:
    settings = dict(ensemble="npt", temperature=300.0, timestep=0.5, steps=40,
                    relaxation_time=50.0, barostat_time=100.0, trajectory_interval=10)  # fmt: skip
    return MDConfig(**{**settings, **overrides})


def test_npt_moves_the_volume_nvt_keeps_it_and_the_folder_says_so(schnet, relaxed_box, tmp_path):
    nvt = MDConfig(ensemble="nvt", thermostat="bussi", steps=20, trajectory_interval=10)
    run_md(relaxed_box, Calculator(schnet), nvt, tmp_path / "nvt", progress=False)
    frames = ase.io.read(tmp_path / "nvt" / "trajectory.xyz", ":")
    assert all(np.array_equal(f.cell.array, relaxed_box.cell.array) for f in frames)
    assert "volume_A3" not in read_log(tmp_path / "nvt" / "md.log")
    nvt_summary = json.loads((tmp_path / "nvt" / "summary.json").read_text())
    assert nvt_summary["mean_volume_A3"] is None and nvt_summary["mean_pressure_GPa"] is None

    result = run_md(relaxed_box, Calculator(schnet, with_stress=True), npt(pressure=1.0),
                    tmp_path / "npt", progress=False)  # fmt: skip
    log = read_log(tmp_path / "npt" / "md.log")
    assert np.ptp(log["volume_A3"]) > 0.01 * relaxed_box.get_volume()
    frames = ase.io.read(tmp_path / "npt" / "trajectory.xyz", ":")
    assert len(frames) == 5  # steps 0, 10, …, 40: each frame has its own cell
    for frame, volume, rho in zip(frames, log["volume_A3"][::10], log["density_g_cm3"][::10]):
        assert frame.get_volume() == pytest.approx(volume, rel=1e-8)
        assert density(frame) == pytest.approx(rho, rel=1e-8)
    assert rho == pytest.approx(relaxed_box.get_masses().sum() * 1.66053907 / volume, rel=1e-6)
    summary = json.loads((tmp_path / "npt" / "summary.json").read_text())
    assert summary.keys() == nvt_summary.keys()
    assert summary["ensemble"] == "npt-mtk" and summary["config"]["pressure"] == 1.0
    for key, column in [("mean_volume_A3", "volume_A3"), ("mean_pressure_GPa", "pressure_GPa"),
                        ("mean_density_g_cm3", "density_g_cm3")]:  # fmt: skip
        assert summary[key] == pytest.approx(log[column].mean())
    assert summary["energy_drift_meV_per_atom_per_ps"] == result.energy_drift_meV_per_atom_per_ps


def test_the_pressure_is_the_volume_derivative_of_the_energy(schnet, relaxed_box, tmp_path):
    """Step 0's logged pressure = −∂E/∂V (finite differences of the energy: a sign or unit
    error in the stress fails this) + the kinetic term 2K / 3V."""
    run_md(relaxed_box, Calculator(schnet, with_stress=True), npt(steps=0), tmp_path,
           progress=False)  # fmt: skip
    log = read_log(tmp_path / "md.log")
    volume, kinetic = log["volume_A3"][0], log["kinetic_eV"][0]
    kinetic_pressure = 2 * kinetic / (3 * volume) / units.GPa
    assert kinetic_pressure > 0.1  # 300 K: a kinetic term the check would miss
    expected = virial_pressure(schnet, relaxed_box) + kinetic_pressure
    assert log["pressure_GPa"][0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("cell_fluctuations", ["isotropic", "triclinic"])
@pytest.mark.parametrize("offset", [-1.0, 1.0])
def test_the_cell_expands_under_low_and_shrinks_under_high_pressure(
    schnet, relaxed_box, tmp_path, cell_fluctuations, offset
):
    """The external pressure 1 GPa below the cell's own (−∂E/∂V, from the energy alone): the
    cell expands; 1 GPa above: it shrinks. A flipped stress sign, pressure in the wrong unit
    (bar, eV/Å³) or a flipped external pressure fail one of the two."""
    pressure = virial_pressure(schnet, relaxed_box) + offset
    config = npt(pressure=pressure, cell_fluctuations=cell_fluctuations, trajectory_interval=40)
    run_md(relaxed_box, Calculator(schnet, with_stress=True), config, tmp_path, progress=False)
    volume = read_log(tmp_path / "md.log")["volume_A3"]
    change = volume[-1] / volume[0] - 1
    assert 0.02 < -offset * change < 0.3  # ~13 % in 20 fs at τ_P = 100 fs, either way
    angles = [ase.io.read(tmp_path / "trajectory.xyz", k).cell.angles() for k in (0, -1)]
    if cell_fluctuations == "isotropic":  # the shape is kept
        np.testing.assert_allclose(angles[1], angles[0], atol=1e-8)
    else:
        assert np.abs(angles[1] - angles[0]).max() > 0.1  # degrees


@pytest.mark.parametrize("cell_fluctuations", ["isotropic", "triclinic"])
def test_mtk_conserved_energy_is_conserved(schnet, relaxed_box, tmp_path, cell_fluctuations):
    """MTK's conserved energy (total + thermostat + barostat energies + P V) fluctuates far
    less than the energy the atoms, thermostat and barostat exchange, and does not drift."""
    config = npt(steps=200, pressure=0.0, cell_fluctuations=cell_fluctuations,
                 relaxation_time=20.0, barostat_time=50.0, trajectory_interval=0)  # fmt: skip
    result = run_md(relaxed_box, Calculator(schnet, with_stress=True), config, tmp_path,
                    progress=False)  # fmt: skip
    log = read_log(tmp_path / "md.log")
    exchanged = log["total_eV"].std()
    assert exchanged > 0.01  # the thermostat and barostat do work on the atoms
    assert log["conserved_eV"].std() < 0.05 * exchanged
    assert abs(result.energy_drift_meV_per_atom_per_ps) < 10.0
    assert np.ptp(log["volume_A3"]) > 1.0


def test_the_thermostat_counts_the_moving_momenta(schnet, relaxed_box):
    """ASE's chain holds Σ p²/m at 3N k_B T; run_md aims it at T (3N − 3) / 3N, so the 3N − 3
    momenta that move (the total stays zero) are at T."""
    from euclidnn.md.run import _integrator

    atoms = relaxed_box.copy()
    atoms.calc = Calculator(schnet)
    dynamics = _integrator(atoms, npt(), np.random.default_rng(0), dof=33)
    assert dynamics._temperature_K == pytest.approx(300.0 * 33 / 36)


class _NoStress(Calculator):
    implemented_properties = ["energy", "free_energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        if "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress")
        super().calculate(atoms, properties, system_changes)


def test_npt_refuses_what_it_cannot_run(schnet, relaxed_box, ethanol, tmp_path, capsys):
    model = tmp_path / "model.safetensors"
    save_model(schnet, model)
    ase.io.write(tmp_path / "box.xyz", relaxed_box)
    box = str(tmp_path / "box.xyz")
    cases = [
        (["ethanol", "--ensemble", "npt"], "--ensemble npt: ethanol is not periodic in 3D"),
        ([box, "--pressure", "1"], "--pressure: sets the constant-pressure run; add --ensemble npt"),
        ([box, "--ensemble", "nvt", "--barostat-time", "500"], "--barostat-time: sets the"),
        ([box, "--cell-fluctuations", "triclinic"], "--cell-fluctuations: sets the"),
        ([box, "--ensemble", "npt", "--barostat-time", "-5"], "barostat_time: must be a positive"),
        ([box, "--ensemble", "npt", "--barostat-time", "2"], "barostat_time: 2 fs is under 10 timesteps"),
        ([box, "--ensemble", "npt", "--relaxation-time", "1"], "relaxation_time: 1 fs is under 10"),
        ([box, "--ensemble", "npt", "--pressure", "10000"], "beyond ±1000 GPa; the unit is GPa"),
        ([box, "--ensemble", "npt", "--pressure", "nan"], "pressure: must be a number (GPa)"),
        ([box, "--ensemble", "npt", "--engine", "lammps", "--pressure", "1e5"], "beyond ±1000"),
    ]  # fmt: skip
    for extra, message in cases:  # refused before a folder is made
        capsys.readouterr()
        out = tmp_path / "not_started"
        assert main(["md", str(model), *extra, "--out", str(out), "--steps", "2"]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (message, err)
        assert not out.exists()
    molecule = ethanol.copy()
    with pytest.raises(ValueError, match="ensemble npt: C2H6O is not periodic"):
        run_md(molecule, Calculator(schnet), npt(), tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match=r"ensemble npt: the calculator \(_NoStress\) gives no"):
        run_md(relaxed_box, _NoStress(schnet), npt(), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_cli_npt_runs_and_prints_the_means(schnet, relaxed_box, tmp_path, capsys):
    model = tmp_path / "model.safetensors"
    save_model(schnet, model)
    ase.io.write(tmp_path / "box.xyz", relaxed_box)
    out = tmp_path / "run"
    code = main(["md", str(model), str(tmp_path / "box.xyz"), "--ensemble", "npt", "--pressure",
                 "0.5", "--steps", "10", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "<P> = " in printed and "GPa" in printed and "g/cm³" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["pressure"] == 0.5
    assert summary["config"]["barostat_time"] == 500.0  # 1000 timesteps of 0.5 fs
    assert summary["config"]["cell_fluctuations"] == "isotropic"


@pytest.mark.slow
def test_npt_samples_the_target_pressure_of_compressed_copper(tmp_path):
    """EMT copper (a physical equation of state): a cell compressed by 4 % in its lattice
    constant expands at 0 GPa, an uncompressed one shrinks at 40 GPa, and over 1 ps at 5 GPa
    ⟨P⟩ = 5 GPa (±1 GPa: ~4 standard errors of the mean of a 32-atom cell) and ⟨T⟩ = T."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    def run(a: float, pressure: float, steps: int):
        atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(2)
        config = MDConfig(ensemble="npt", temperature=300.0, timestep=2.0, steps=steps,
                          pressure=pressure, barostat_time=100.0, trajectory_interval=0)  # fmt: skip
        run_md(atoms, EMT(), config, tmp_path, progress=False)
        return read_log(tmp_path / "md.log")

    compressed = run(3.45, 0.0, 50)
    assert compressed["pressure_GPa"][0] > 10 and compressed["volume_A3"][1:].min() > 3.45**3 * 8
    pressed = run(3.59, 40.0, 50)
    assert pressed["volume_A3"][1:].max() < 3.59**3 * 8
    log = run(3.59, 5.0, 500)
    assert log["pressure_GPa"][100:].mean() == pytest.approx(5.0, abs=1.0)
    assert log["temperature_K"][100:].mean() == pytest.approx(300.0, rel=0.15)
