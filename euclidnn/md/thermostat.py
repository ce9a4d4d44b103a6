"""Stochastic velocity rescaling: the canonical thermostat of Bussi, Donadio and Parrinello,
J. Chem. Phys. 126, 014101 (2007), on ASE's velocity Verlet.

Ours rather than ASE's ``Bussi`` because the number of degrees of freedom f is an argument:
rescaling all momenta by one factor keeps a zero total momentum (and a molecule's zero angular
momentum) at zero, so only 3N − 3 (periodic) or 3N − 6 (3N − 5 linear) momenta fluctuate, and
targeting ASE's 3N would heat those by 3N / f.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms, units
from ase.md.verlet import VelocityVerlet

__all__ = ["StochasticVelocityRescaling", "resampled_kinetic_energy"]


def resampled_kinetic_energy(
    kinetic: float,
    target: float,
    degrees_of_freedom: int,
    decay: float,
    rng: np.random.Generator,
) -> float:
    """The kinetic energy K' after one thermostat step (Bussi et al. 2007, eq. A7):

        K' = c K + (1 − c) K̄ (R₁² + Σᵢ₌₂ᶠ Rᵢ²) / f + 2 R₁ √(c (1 − c) K K̄ / f)

    with c = exp(−Δt / τ), K̄ = f k_B T / 2 the target, and Rᵢ independent standard normal
    numbers (the sum of the f − 1 squares is drawn at once, as a χ² variable). Repeated, it
    relaxes K towards K̄ with time constant τ and samples the canonical distribution of the
    kinetic energy of f degrees of freedom, a Γ(f/2, k_B T): mean K̄, variance K̄² · 2/f.

    Args:
        kinetic: K, eV (> 0).
        target: K̄, eV.
        degrees_of_freedom: f ≥ 1.
        decay: c = exp(−Δt / τ), in [0, 1].
        rng: the source of R₁ (drawn first) and of the χ² sum.

    >>> rng = np.random.default_rng(0)
    >>> resampled_kinetic_energy(0.2, 1.0, 3, decay=1.0, rng=rng)  # τ → ∞: K is kept
    0.2
    >>> samples = [resampled_kinetic_energy(0.2, 1.0, 3, decay=0.0, rng=rng) for _ in range(20000)]
    >>> round(float(np.mean(samples)), 1)  # τ → 0: K is drawn from the canonical distribution
    1.0
    """
    f = degrees_of_freedom
    r1 = rng.standard_normal()
    rest = 2.0 * rng.standard_gamma(0.5 * (f - 1)) if f > 1 else 0.0  # χ²(f − 1)
    share = (1.0 - decay) * target / f
    return (
        decay * kinetic + share * (r1 * r1 + rest) + 2.0 * r1 * math.sqrt(decay * share * kinetic)
    )


class StochasticVelocityRescaling(VelocityVerlet):
    """NVT molecular dynamics: velocity Verlet, with every step preceded by the
    Bussi–Donadio–Parrinello rescaling of all momenta, p → p √(K'/K)
    (:func:`resampled_kinetic_energy`), which samples the canonical ensemble at
    ``temperature_K`` for any relaxation time τ.

    Args:
        atoms: the system, with momenta (not all zero: rescaling cannot start from rest).
        timestep_fs: Δt, fs.
        temperature_K: T, K.
        relaxation_time_fs: τ, fs (the time over which K forgets its value).
        degrees_of_freedom: f, the momenta that fluctuate, e.g. 3N − 6 for a molecule started
            without translation or rotation (:func:`~euclidnn.md.run.degrees_of_freedom`).
        rng: random numbers of the thermostat.
        **kwargs: passed to ASE's ``MolecularDynamics`` (``logfile``, ``trajectory``, …).

    Attributes:
        target_kinetic_energy: K̄ = f k_B T / 2, eV.
        thermostat_work: energy the thermostat has put into the system so far, eV; the total
            energy minus it is conserved up to the integration error.

    >>> from ase.build import molecule
    >>> from ase.calculators.emt import EMT
    >>> atoms = molecule("N2", calculator=EMT())
    >>> atoms.set_momenta([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    >>> dynamics = StochasticVelocityRescaling(atoms, 1.0, 300.0, 10.0, degrees_of_freedom=1,
    ...                                        rng=np.random.default_rng(0))
    >>> round(dynamics.target_kinetic_energy / (units.kB * 300.0), 6)  # f k_B T / 2
    0.5
    >>> dynamics.run(10)
    True
    """

    def __init__(
        self,
        atoms: Atoms,
        timestep_fs: float,
        temperature_K: float,
        relaxation_time_fs: float,
        *,
        degrees_of_freedom: int,
        rng: np.random.Generator,
        **kwargs,
    ) -> None:
        super().__init__(atoms, timestep_fs * units.fs, **kwargs)
        if degrees_of_freedom < 1:
            raise ValueError(f"degrees_of_freedom: must be ≥ 1, got {degrees_of_freedom}")
        if not atoms.get_kinetic_energy() > 0:
            raise ValueError("stochastic velocity rescaling: give the atoms momenta first")
        self.degrees_of_freedom = int(degrees_of_freedom)
        self.target_kinetic_energy = 0.5 * self.degrees_of_freedom * units.kB * temperature_K
        self.decay = math.exp(-timestep_fs / relaxation_time_fs)
        self.rng = rng
        self.thermostat_work = 0.0

    def step(self, forces=None):
        """Rescale the momenta, then one velocity-Verlet step; returns the forces."""
        kinetic = self.atoms.get_kinetic_energy()
        resampled = resampled_kinetic_energy(
            kinetic, self.target_kinetic_energy, self.degrees_of_freedom, self.decay, self.rng
        )
        self.atoms.set_momenta(self.atoms.get_momenta() * math.sqrt(resampled / kinetic))
        self.thermostat_work += resampled - kinetic
        return super().step(forces)
