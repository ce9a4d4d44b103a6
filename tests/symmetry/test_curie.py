"""Curie's principle: an equivariant model's outputs on a symmetric input are invariant under
the input's group (float64, ~1e-12), so forbidden outputs (benzene's dipole) vanish."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from symmetry_molecules import ferrocene

from euclidnn.data import Graph
from euclidnn.models import NequIP, NequIPConfig, TensorHead
from euclidnn.symmetry import invariance_error, invariant_basis, point_group, project, symmetrize


@pytest.fixture(scope="module")
def heads():
    torch.manual_seed(0)
    config = NequIPConfig(
        species=(1, 6, 7, 8, 26), lmax=2, parity=True, num_features=4, num_layers=2, r_max=4.0
    )
    trunk = NequIP(config).double()
    return {
        "1o": TensorHead(trunk, "1o").double(),
        "0e + 2e": TensorHead(trunk, "0e + 2e").double(),
    }


def _exact(atoms: Atoms) -> Atoms:
    """Symmetrized to machine precision, then rotated to a generic frame."""
    exact = symmetrize(atoms).structure.to_ase()
    exact.rotate(41, (0.3, -1, 0.7), center=(0, 0, 0))
    return exact


@pytest.mark.parametrize(
    "atoms",
    [molecule("H2O"), molecule("NH3"), molecule("CH4"), molecule("C6H6"), ferrocene(True)],
    ids=["water", "ammonia", "methane", "benzene", "ferrocene"],
)
@pytest.mark.parametrize("irreps", ["1o", "0e + 2e"])
def test_outputs_are_invariant_under_the_input_group(heads, atoms, irreps):
    atoms = _exact(atoms)
    group = point_group(atoms)
    y = heads[irreps](Graph.from_ase(atoms, r_max=4.0, dtype=torch.float64))[0].detach()
    scale = (
        heads[irreps](Graph.from_ase(_broken(atoms), r_max=4.0, dtype=torch.float64))[0]
        .detach()
        .norm()
    )
    assert invariance_error(y, irreps, group) < 1e-12 * max(1.0, float(scale))
    # equivalently: y lies in the invariant subspace; the forbidden part is rounding
    assert (y - project(y, irreps, group)).norm() < 1e-12 * max(1.0, float(scale))
    if irreps == "1o" and invariant_basis("1o", group).shape[0] == 0:
        assert y.norm() < 1e-12 * max(1.0, float(scale))


def _broken(atoms: Atoms) -> Atoms:
    broken = atoms.copy()
    broken.positions += np.random.default_rng(0).normal(0, 0.1, broken.positions.shape)
    return broken


def test_broken_input_gives_a_measurable_error(heads):
    """The measure can fail: on a distorted benzene, outputs are not D6h-invariant."""
    benzene = _exact(molecule("C6H6"))
    group = point_group(benzene)
    y = heads["1o"](Graph.from_ase(_broken(benzene), r_max=4.0, dtype=torch.float64))[0].detach()
    assert invariance_error(y, "1o", group) > 1e-4
