"""Stochastic velocity rescaling (Bussi, Donadio, Parrinello 2007): the resampling step has the
mean and variance of eq. A7 and samples the canonical kinetic energy of f degrees of freedom;
in MD, the thermal degrees of freedom of a molecule (3N − 6) hold ⟨K⟩ = f k_B T / 2, and the
total energy minus the thermostat's work is conserved."""

import math

import numpy as np
import pytest
from ase import units
from ase.build import molecule

from euclidnn.md import Calculator, MDConfig, StochasticVelocityRescaling, read_log, run_md
from euclidnn.md.run import degrees_of_freedom
from euclidnn.md.thermostat import resampled_kinetic_energy


@pytest.mark.parametrize("f", [1, 3, 21])
def test_one_resampling_has_the_mean_and_variance_of_eq_a7(f):
    """K' = (√(cK) + R₁√s)² + s χ²(f − 1), s = (1 − c) K̄ / f, so
    E[K'] = c K + (1 − c) K̄ and Var[K'] = 4 c K s + 2 f s²."""
    rng = np.random.default_rng(0)
    kinetic, target, decay, n = 0.3, 1.0, 0.8, 40000
    samples = np.array([resampled_kinetic_energy(kinetic, target, f, decay, rng) for _ in range(n)])
    s = (1 - decay) * target / f
    mean, variance = decay * kinetic + (1 - decay) * target, 4 * decay * kinetic * s + 2 * f * s**2
    assert samples.min() >= 0
    assert samples.mean() == pytest.approx(mean, abs=5 * math.sqrt(variance / n))
    assert samples.var() == pytest.approx(variance, rel=0.05)


@pytest.mark.parametrize("f", [3, 21])
def test_repeated_resampling_samples_the_canonical_kinetic_energy(f):
    """The chain K → K' → … has the stationary distribution Γ(f/2, k_B T): mean K̄, variance
    2 K̄² / f."""
    rng = np.random.default_rng(1)
    target, decay, kinetic, chain = 1.0, math.exp(-0.1), 5.0, []
    for _ in range(60000):
        kinetic = resampled_kinetic_energy(kinetic, target, f, decay, rng)
        chain.append(kinetic)
    chain = np.array(chain[1000:])
    assert chain.mean() == pytest.approx(target, rel=0.06)
    assert chain.var() == pytest.approx(2 * target**2 / f, rel=0.15)


def test_target_kinetic_energy_is_f_kt_over_two(ethanol, schnet):
    ethanol.calc = Calculator(schnet)
    ethanol.set_momenta(np.ones((len(ethanol), 3)))
    dof = degrees_of_freedom(ethanol, MDConfig(ensemble="nvt", thermostat="bussi"))
    assert dof == 3 * 9 - 6
    dynamics = StochasticVelocityRescaling(
        ethanol, 0.5, 300.0, 10.0, degrees_of_freedom=dof, rng=np.random.default_rng(0)
    )
    assert dynamics.target_kinetic_energy == pytest.approx(0.5 * 21 * units.kB * 300.0)
    with pytest.raises(ValueError, match="momenta first"):
        ethanol.set_momenta(np.zeros((len(ethanol), 3)))
        StochasticVelocityRescaling(ethanol, 0.5, 300.0, 10.0, degrees_of_freedom=dof,
                                    rng=np.random.default_rng(0))  # fmt: skip


def test_water_vibrations_hold_the_canonical_kinetic_energy(morse_network, tmp_path):
    """Water (bonds at their lengths: in equilibrium from the start) started without
    translation or rotation keeps them at zero, so its f = 3N − 6 = 3 vibrations hold all the
    kinetic energy: ⟨K⟩ = 3/2 k_B T, var K / ⟨K⟩² = 2/f. A count of 3N = 9 would target three
    times as much, 3N − 3 twice, 3N − 5 (linear) 4/3. Bounds ≥ 5 standard errors."""
    config = MDConfig(ensemble="nvt", thermostat="bussi", temperature=300.0, timestep=0.5,
                      steps=6000, relaxation_time=10.0, trajectory_interval=0)  # fmt: skip
    water = molecule("H2O")
    result = run_md(water, morse_network(water), config, tmp_path, progress=False)
    assert result.degrees_of_freedom == 3
    kinetic = read_log(tmp_path / "md.log")["kinetic_eV"][300:]
    assert kinetic.mean() == pytest.approx(3 / 2 * units.kB * 300.0, rel=0.2)
    assert kinetic.var() / kinetic.mean() ** 2 == pytest.approx(2 / 3, rel=0.35)
    assert result.mean_temperature_K == pytest.approx(300.0, rel=0.2)


def test_energy_minus_thermostat_work_is_conserved(schnet, ethanol):
    """The rescaling exchanges energy with a bath; what it put in, subtracted from the total
    energy, leaves the effective energy of Bussi et al., which only the integration error
    changes."""
    atoms = ethanol.copy()
    atoms.calc = Calculator(schnet)
    rng = np.random.default_rng(0)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * 0.3)
    dynamics = StochasticVelocityRescaling(atoms, 0.25, 600.0, 5.0, degrees_of_freedom=27, rng=rng)
    total, conserved = [], []

    def record():
        energy = atoms.get_potential_energy() + atoms.get_kinetic_energy()
        total.append(energy)
        conserved.append(energy - dynamics.thermostat_work)

    dynamics.attach(record, interval=1)
    dynamics.run(300)
    assert np.std(total) > 0.05  # the thermostat does exchange energy
    assert np.std(conserved) < 0.02 * np.std(total)
