"""Selection rules, projections and symmetrization."""

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from symmetry_molecules import sulfur_hexafluoride

from euclidnn.o3 import CartesianTensor, Irreps
from euclidnn.symmetry import (
    Symmetry,
    allowed_properties,
    format_properties,
    invariant_basis,
    point_group,
    point_group_operations,
    project,
    project_atoms,
    project_cartesian,
    projector,
    representation,
    space_group,
    symmetrize,
)


def _group(name: str) -> Symmetry:
    ops = point_group_operations(name)
    return Symmetry(name, ops, np.zeros((len(ops), 0), int), np.zeros(3), np.zeros((len(ops), 3)))


def _allowed(group) -> dict[str, int]:
    return {r.name.split(" (")[0]: r.allowed for r in allowed_properties(group)}


def test_water_dipole_lies_on_the_c2_axis():
    water = molecule("H2O")
    water.rotate(37, (1, 2, 3))
    group = point_group(water)
    basis = invariant_basis("1o", group)
    c2 = next(R for R in group.operations if np.linalg.det(R) > 0 and np.trace(R) < 0)
    axis = np.linalg.eigh(c2 + c2.T)[1][:, -1]  # eigenvalue 2: the rotation axis
    assert basis.shape == (1, 3)
    assert abs(abs(basis[0].numpy() @ axis) - 1) < 1e-12


def test_benzene_and_methane():
    assert _allowed(point_group(molecule("C6H6")))["dipole"] == 0
    methane = point_group(molecule("CH4"))
    allowed = _allowed(methane)
    assert allowed["dipole"] == 0 and allowed["polarizability"] == 1
    basis = invariant_basis("0e + 2e", methane)  # isotropic: only the 0e component
    assert torch.allclose(basis.abs(), torch.tensor([[1.0, 0, 0, 0, 0, 0]], dtype=torch.float64))
    assert allowed["octupole"] == 1  # Td allows xyz


@pytest.mark.parametrize(
    "name, counts",
    [  # invariants of l = 0..6 (even parity), from the character tables
        ("Ih", [1, 0, 0, 0, 0, 0, 1]),
        ("Oh", [1, 0, 0, 0, 1, 0, 1]),
        ("D6h", [1, 0, 1, 0, 1, 0, 2]),
        (
            "C2v",
            [1, 0, 2, 1, 3, 2, 4],
        ),  # even parity: the mirrors act as the C2 about their normals (D2)
    ],
)
def test_invariant_dimensions_of_spherical_harmonics(name, counts):
    group = _group(name)
    irreps = Irreps([(1, (l, 1)) for l in range(7)])  # 0e + 1e + … + 6e
    p = projector(irreps, group)
    traces = [round(float(p[s, s].trace())) for s in irreps.slices()]
    assert traces == counts
    basis = invariant_basis(irreps, group)  # each basis vector lies in one l block
    per_l = [int((basis[:, s].norm(dim=1) > 0.5).sum()) for s in irreps.slices()]
    assert per_l == counts and len(basis) == sum(counts)


def test_pseudoscalar_needs_a_chiral_group():
    assert _allowed(_group("D3"))["optical rotation, chirality"] == 1
    assert _allowed(_group("D3h"))["optical rotation, chirality"] == 0
    assert _allowed(_group("S4"))["optical rotation, chirality"] == 0


def test_elastic_constants_of_the_crystal_classes():
    """Independent elastic constants: cubic 3, hexagonal 5, tetragonal 4/mmm 6, orthorhombic 9."""
    for name, count in (("Oh", 3), ("D6h", 5), ("D4h", 6), ("D2h", 9), ("Ci", 21)):
        assert _allowed(_group(name))["elastic stiffness"] == count, name
    nacl = space_group(bulk("NaCl", "rocksalt", a=5.64))
    assert _allowed(nacl)["elastic stiffness"] == 3
    table = format_properties(allowed_properties(nacl))
    assert "dipole" in table and "forbidden" in table


def test_projector_is_an_orthogonal_projection():
    group = point_group(sulfur_hexafluoride())
    irreps = Irreps("2x0e + 1o + 2e + 3o + 4e + 0o")
    p = projector(irreps, group)
    assert torch.allclose(p @ p, p, atol=1e-12) and torch.allclose(p, p.T, atol=1e-12)
    basis = invariant_basis(irreps, group)
    assert torch.allclose(basis @ basis.T, torch.eye(len(basis), dtype=torch.float64), atol=1e-12)
    D = representation(irreps, group)
    assert (D @ basis.T - basis.T).abs().max() < 1e-12
    y = irreps.randn(5, -1, dtype=torch.float64)
    assert torch.allclose(
        project(project(y, irreps, group), irreps, group), project(y, irreps, group)
    )


def test_project_cartesian_equals_the_cartesian_average():
    group = point_group(molecule("NH3"))
    t = torch.randn(3, 3, dtype=torch.float64)
    t = t + t.T
    R = torch.as_tensor(group.operations)
    expected = torch.einsum("gai,ij,gbj->ab", R, t, R) / group.order
    assert torch.allclose(project_cartesian(t, "ij=ji", group), expected, atol=1e-12)
    cartesian = CartesianTensor("ijk=ikj")  # rank 3, polar: the Td of methane keeps only xyz
    methane = point_group(molecule("CH4"))
    t3 = torch.randn(3, 3, 3, dtype=torch.float64)
    projected = project_cartesian(
        cartesian.to_cartesian(cartesian.from_cartesian(t3)), "ijk=ikj", methane
    )
    R = torch.as_tensor(methane.operations)
    average = (
        torch.einsum(
            "gai,gbj,gck,ijk->abc", R, R, R, cartesian.to_cartesian(cartesian.from_cartesian(t3))
        )
        / 24
    )
    assert torch.allclose(projected, average, atol=1e-12)


def test_project_atoms_is_equivariant_under_the_group():
    """Projected per-atom vectors satisfy y_π(i) = R y_i: what an equivariant map can output."""
    group = point_group(molecule("C6H6"))
    y = torch.randn(12, 3, dtype=torch.float64)
    projected = project_atoms(y, "1o", group)
    R = torch.as_tensor(group.operations)
    moved = torch.einsum("gab,nb->gna", R, projected)
    assert (moved - projected[torch.as_tensor(group.permutations)]).abs().max() < 1e-12
    with pytest.raises(ValueError, match="features"):
        project_atoms(y[:5], "1o", group)


def test_symmetrize_noisy_molecule_is_exact():
    rng = np.random.default_rng(1)
    benzene = molecule("C6H6")
    noisy = benzene.copy()
    noisy.positions += rng.normal(0, 0.01, noisy.positions.shape)
    result = symmetrize(noisy)
    assert result.group.name == "D6h"
    assert 0.003 < result.max_displacement < 0.05
    group = result.group
    positions = result.structure.positions
    assert np.abs(group.apply(positions) - positions[group.permutations]).max() < 1e-12
    assert point_group(result.structure, tolerance=1e-8).name == "D6h"


def test_symmetrize_crystal():
    rng = np.random.default_rng(2)
    crystal = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    group = space_group(crystal)
    noisy = crystal.copy()
    noisy.positions += rng.normal(0, 0.002, noisy.positions.shape)
    assert space_group(noisy, tolerance=1e-4).number < 225
    result = symmetrize(noisy, group=group)
    assert space_group(result.structure, tolerance=1e-6).number == 225
    assert result.max_displacement < 0.02


def test_symmetrize_strained_crystal_restores_the_cell():
    """A cubic cell strained by 0.5 % along x: positions and metric averaged → Fm-3m again."""
    crystal = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    strained = crystal.copy()
    strained.set_cell(crystal.cell[:] @ np.diag([1.005, 1.0, 1.0]), scale_atoms=True)
    assert space_group(strained, tolerance=1e-4).number != 225
    result = symmetrize(strained, tolerance=0.05)
    assert result.group.number == 225
    assert space_group(result.structure, tolerance=1e-6).number == 225
    lengths = np.linalg.norm(result.structure.cell, axis=1)
    assert np.ptp(lengths) < 1e-10
