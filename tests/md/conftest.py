"""Small models and structures for the MD tests (random weights: the tests check mechanics,
not chemistry)."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import Calculator as AseCalculator

from euclidnn.models import SchNet, SchNetConfig


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One PyTorch thread: the MD tests evaluate small systems step by step, where more
    threads only add overhead, and spinning OpenMP threads slow down many-fold on a busy
    machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_schnet(dtype=torch.float64, r_max=4.0):
    torch.manual_seed(0)
    model = SchNet(
        SchNetConfig(species=(1, 6, 8), r_max=r_max, num_features=16, num_interactions=2)
    )
    return model.to(dtype)


@pytest.fixture
def schnet():
    return make_schnet()


@pytest.fixture
def schnet_factory():
    """``make_schnet(dtype=…, r_max=…)``: a fresh SchNet with the same random weights."""
    return make_schnet


class MorseNetwork(AseCalculator):
    """Every pair of atoms bonded at its length in ``reference``:
    E = Σ_{i<j} D (1 − exp(−a (r_ij − r⁰_ij)))², D = 1 eV, a = 4 / Å.

    A potential whose minimum is the given geometry (so MD at 300 K is in equilibrium from the
    start, unlike a random model's) and which depends on distances only (so it keeps the total
    and angular momentum): for tests of the sampled temperature of a molecule.
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, reference: Atoms, depth: float = 1.0, stiffness: float = 4.0):
        super().__init__()
        self.lengths = reference.get_all_distances()  # [n, n] Å
        self.depth, self.stiffness = depth, stiffness

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        vectors = self.atoms.positions[:, None] - self.atoms.positions[None]  # [n, n, 3]
        distances = np.linalg.norm(vectors, axis=-1) + np.eye(n)  # 1 on the diagonal
        x = np.exp(-self.stiffness * (distances - self.lengths))
        pairs = 1 - np.eye(n)
        energy = 0.5 * (self.depth * (1 - x) ** 2 * pairs).sum()
        de_dr = 2 * self.depth * self.stiffness * x * (1 - x) * pairs  # [n, n] eV/Å
        forces = -((de_dr / distances)[..., None] * vectors).sum(1)
        self.results = {"energy": energy, "forces": forces}


@pytest.fixture
def morse_network():
    """``morse_network(atoms)``: a :class:`MorseNetwork` calculator with its minimum at
    ``atoms``."""
    return MorseNetwork


@pytest.fixture
def ethanol():
    return molecule("CH3CH2OH")


@pytest.fixture
def periodic_box():
    """12 atoms (C, H, O) in a 6 Å triclinic cell, no two closer than 1.2 Å."""
    rng = np.random.default_rng(1)
    cell = np.array([[6.0, 0.0, 0.0], [0.8, 6.0, 0.0], [0.3, -0.5, 6.0]])
    positions = []
    while len(positions) < 12:
        candidate = rng.random(3) @ cell
        atoms = Atoms("X" * (len(positions) + 1), positions + [candidate], cell=cell, pbc=True)
        if (
            len(positions) == 0
            or atoms.get_distances(-1, range(len(positions)), mic=True).min() > 1.2
        ):
            positions.append(candidate)
    return Atoms("C4H6O2", positions=positions, cell=cell, pbc=True)


@pytest.fixture
def relaxed_box(schnet, periodic_box):
    """The periodic box with its atoms at a minimum of ``schnet``'s energy (fixed cell), so a
    short NPT run's pressure is its equilibrium value, not that of atoms falling off a slope."""
    from ase.optimize import FIRE

    from euclidnn.md import Calculator

    atoms = periodic_box.copy()
    atoms.calc = Calculator(schnet)
    FIRE(atoms, logfile=None).run(fmax=0.05, steps=300)
    atoms.calc = None
    return atoms
