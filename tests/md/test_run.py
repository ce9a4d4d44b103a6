"""run_md: energy conservation (NVE), canonical temperatures (Langevin, Bussi), outputs that a
killed run keeps, the CLI and its bad inputs."""

import json

import numpy as np
import pytest
from ase.calculators.calculator import Calculator as AseCalculator

from euclidnn.cli.__main__ import main
from euclidnn.md import Calculator, MDConfig, read_log, run_md
from euclidnn.models import save_model


def test_nve_conserves_energy(schnet, periodic_box, tmp_path):
    """Velocity Verlet at 0.5 fs: the total energy fluctuates far less than the potential
    energy exchanged with the kinetic energy, and does not drift."""
    config = MDConfig(ensemble="nve", temperature=600.0, timestep=0.5, steps=400)
    result = run_md(periodic_box, Calculator(schnet), config, tmp_path, progress=False)
    log = read_log(tmp_path / "md.log")
    assert len(log["step"]) == 401 and result.steps == 400
    exchanged = log["potential_eV"].std()
    assert exchanged > 0.01  # the atoms do move in the potential
    assert log["total_eV"].std() < 0.02 * exchanged
    assert abs(result.energy_drift_meV_per_atom_per_ps) < 5.0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 400 and summary["ns_per_day"] > 0
    assert summary["energy_drift_meV_per_atom_per_ps"] == result.energy_drift_meV_per_atom_per_ps


@pytest.mark.parametrize("thermostat", ["langevin", "bussi"])
def test_thermostats_sample_the_target_temperature(schnet, periodic_box, tmp_path, thermostat):
    """⟨T⟩ = T₀ and var(T) / T₀² = 2 / f in the canonical ensemble (f degrees of freedom).
    Bounds: ~4 standard errors of the mean over ~100 independent samples."""
    config = MDConfig(
        ensemble="nvt",
        thermostat=thermostat,
        temperature=300.0,
        timestep=1.0,
        steps=2500,
        friction=0.05,
        relaxation_time=10.0,
        trajectory_interval=0,
    )
    result = run_md(periodic_box, Calculator(schnet), config, tmp_path, progress=False)
    # Langevin thermalises all 3N momenta; Bussi keeps the total momentum at zero
    assert result.degrees_of_freedom == {"langevin": 36, "bussi": 33}[thermostat]
    temperature = read_log(tmp_path / "md.log")["temperature_K"][300:]
    assert temperature.mean() == pytest.approx(300.0, rel=0.1)
    relative_variance = temperature.var() / 300.0**2
    assert relative_variance == pytest.approx(2 / result.degrees_of_freedom, rel=0.4)


class _FailsAtCall(AseCalculator):
    implemented_properties = ["energy", "forces"]

    def __init__(self, inner, fail_at):
        super().__init__()
        self.inner, self.fail_at, self.calls = inner, fail_at, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("killed")
        self.results = {k: self.inner.get_property(k, atoms) for k in ("energy", "forces")}


def test_an_interrupted_run_keeps_its_log_and_trajectory(schnet, ethanol, tmp_path):
    config = MDConfig(steps=100, trajectory_interval=5)
    with pytest.raises(RuntimeError, match="killed"):
        run_md(ethanol, _FailsAtCall(Calculator(schnet), 31), config, tmp_path, progress=False)
    log = read_log(tmp_path / "md.log")
    assert log["step"].tolist() == list(range(30))
    frames = (tmp_path / "trajectory.xyz").read_text().count("Properties=")
    assert frames == 6  # steps 0, 5, …, 25
    assert not (tmp_path / "summary.json").exists()


def test_cli_md_nve_and_bad_inputs(schnet, tmp_path, capsys):
    save_model(schnet, tmp_path / "model.safetensors")
    out = tmp_path / "run"
    code = main(["md", str(tmp_path / "model.safetensors"), "ethanol", "--steps", "10",
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 10 and summary["ensemble"] == "nve"
    assert np.isfinite(summary["energy_drift_meV_per_atom_per_ps"])
    not_a_structure = tmp_path / "notes.xyz"
    not_a_structure.write_text("this is not\na structure\n")
    cases = [
        ([str(not_a_structure)], "notes.xyz: frame 0: cannot read a structure"),
        (["ethanol", "--timestep", "-1"], "timestep: must be a positive number"),
        (["ethanol", "--temperature", "0"], "temperature: must be a positive number"),
        (["SiH4"], "elements [14]"),
    ]
    for extra, message in cases:  # a run that cannot start creates no folder
        capsys.readouterr()
        fresh = tmp_path / "not_started"
        assert main(["md", str(tmp_path / "model.safetensors"), *extra, "--out", str(fresh)]) == 2
        assert message in capsys.readouterr().err or pytest.fail(message)
        assert not fresh.exists()
    assert main(["md", str(not_a_structure), "ethanol", "--out", str(tmp_path / "x")]) == 2
    assert "not a safetensors file" in capsys.readouterr().err


def test_bussi_thermalises_the_vibrations_of_a_molecule(morse_network, ethanol, tmp_path):
    """A molecule started without translation or rotation keeps them at zero under Bussi
    rescaling, so its 3N − 6 = 21 vibrations hold all the kinetic energy: ⟨K⟩ = 21/2 k_B T₀
    (ASE's 3N count would give 27/2, i.e. vibrations at 1.29 T₀; 3N − 3, 1.14 T₀).

    The potential has its minimum at the starting geometry, so the run is in equilibrium after
    a few τ (a random model's molecule keeps releasing energy, or collapses). Bound: ~4
    standard errors (relative std of K √(2/21) over ~100 independent samples)."""
    config = MDConfig(ensemble="nvt", thermostat="bussi", temperature=300.0, timestep=0.5,
                      steps=4000, relaxation_time=10.0, trajectory_interval=0)  # fmt: skip
    result = run_md(ethanol, morse_network(ethanol), config, tmp_path, progress=False)
    assert result.degrees_of_freedom == 21
    kinetic = read_log(tmp_path / "md.log")["kinetic_eV"][300:]
    assert kinetic.mean() == pytest.approx(21 / 2 * 8.617333e-5 * 300.0, rel=0.12)
