"""Bond angles and partial pair distributions by species on structures whose answer is known:
a regular PO4 tetrahedron, a bent P–O–P, both across the faces of a periodic cell; an ideal
gas, simple cubic and CsCl lattices (peak positions and coordination numbers), ASE's own
partial g(r) as a second opinion, and a molecule."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.geometry.rdf import get_rdf

from euclidnn.md.analysis import bond_angle_distribution, partial_rdf

TETRAHEDRAL = np.degrees(np.arccos(-1.0 / 3.0))  # 109.4712°


def phosphate(centre=(0.0, 0.0, 0.0), bond=1.54) -> Atoms:
    """A regular PO4 tetrahedron: P at ``centre``, O along (±1, ±1, ±1) with an even number of −."""
    corners = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    return Atoms("PO4", np.array(centre) + np.vstack([[0, 0, 0], bond * corners]))


def bridge(angle_deg: float, centre=(0.0, 0.0, 0.0), bond=1.6) -> Atoms:
    """P–O–P with the angle ``angle_deg`` at O."""
    half = np.radians(angle_deg) / 2
    directions = np.array([[-np.sin(half), np.cos(half), 0], [np.sin(half), np.cos(half), 0]])
    return Atoms("OP2", np.array(centre) + np.vstack([[0, 0, 0], bond * directions]))


def periodic(atoms: Atoms, length=8.0) -> Atoms:
    """``atoms`` in a cubic cell, wrapped, so that bonds cross the faces."""
    atoms = atoms.copy()
    atoms.set_cell(np.eye(3) * length)
    atoms.pbc = True
    atoms.wrap()
    return atoms


def test_tetrahedron_has_six_tetrahedral_angles_also_across_the_cell_corner():
    for atoms in (phosphate(), periodic(phosphate(centre=(0.2, 0.3, 7.9)))):
        found = bond_angle_distribution([atoms], ("O", "P", "O"), 1.9)
        assert found.count == 6  # each unordered pair of the four O once
        assert found.mean == pytest.approx(TETRAHEDRAL, abs=1e-9)
        assert found.density.sum() * (found.angle[1] - found.angle[0]) == pytest.approx(1.0)
        assert found.angle[found.density.argmax()] == pytest.approx(109.5)  # the 109–110° bin
    wrapped = periodic(phosphate(centre=(0.2, 0.3, 7.9)))
    assert (np.abs(wrapped.positions - wrapped.positions[0]) > 4).any()  # really split apart
    wrapped.pbc = False  # the same coordinates as a molecule: the bonds are gone
    assert bond_angle_distribution([wrapped], ("O", "P", "O"), 1.9).count < 6


@pytest.mark.parametrize("angle", [120.0, 143.0, 180.0])
def test_bridging_angle_at_oxygen_across_a_face(angle):
    for atoms in (bridge(angle), periodic(bridge(angle, centre=(7.8, 4.0, 4.0)))):
        found = bond_angle_distribution([atoms], ("P", "O", "P"), 1.9)
        assert found.count == 1 and found.mean == pytest.approx(angle, abs=1e-6)
    # the O–P–O triplet of this fragment has no angle: each P has one O
    assert bond_angle_distribution([bridge(angle)], ("O", "P", "O"), 1.9).count == 0


def test_cutoffs_of_each_side_are_respected():
    atoms = bridge(140.0)
    atoms.positions[2] = atoms.positions[0] + 2.0 * (atoms.positions[2] - atoms.positions[0]) / 1.6
    assert bond_angle_distribution([atoms], ("P", "O", "P"), 1.9).count == 0  # one P at 2.0 Å
    for cutoffs in [(1.9, 2.1), (2.1, 1.9), 2.1, (2.1, 2.2)]:  # the one angle, counted once
        assert bond_angle_distribution([atoms], ("P", "O", "P"), cutoffs).count == 1, cutoffs
    assert bond_angle_distribution([atoms], ("P", "O", "P"), (1.5, 2.1)).count == 0
    lithium = atoms + Atoms("Li", [[0.0, -2.0, 0.0]])
    assert bond_angle_distribution([lithium], ("Li", "O", "P"), (2.1, 1.9)).count == 1
    assert bond_angle_distribution([lithium], ("Li", "O", "P"), (2.1, 2.1)).count == 2


def test_images_of_the_same_atom_are_distinct_neighbours():
    """Simple cubic polonium, one atom per 3.35 Å cell: six images, 12 angles of 90°, 3 of 180°."""
    found = bond_angle_distribution([bulk("Po", "sc", a=3.35)], ("Po", "Po", "Po"), 3.4)
    assert found.count == 15
    assert found.density[90] == pytest.approx(12 / 15) and found.density[179] == pytest.approx(
        3 / 15
    )


def test_unknown_or_missing_species_is_named():
    with pytest.raises(ValueError, match="P-O-P: the structure holds no P"):
        bond_angle_distribution([molecule("H2O")], ("P", "O", "P"), 1.9)
    with pytest.raises(ValueError, match="'Xx' is not a chemical element"):
        partial_rdf([molecule("H2O")], ("Xx", "O"), 4.0)


def ideal_gas(frames=30, seed=0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    cell = np.array([[9.0, 0.0, 0.0], [1.5, 9.0, 0.0], [-1.0, 0.5, 9.0]])
    return [Atoms("Li40O60", rng.random((100, 3)) @ cell, cell=cell, pbc=True)
            for _ in range(frames)]  # fmt: skip


def test_partial_rdf_of_an_ideal_gas_is_one():
    frames = ideal_gas()
    for pair in [("Li", "O"), ("O", "Li"), ("O", "O"), ("Li", "Li")]:
        r, g = partial_rdf(frames, pair, r_max=4.0, bins=8)
        np.testing.assert_allclose(g[2:], 1.0, atol=0.12, err_msg=str(pair))
        assert g[2:].mean() == pytest.approx(1.0, abs=0.03)  # N_A N_B, or N_A (N_A − 1)


def test_partial_rdf_agrees_with_ase():
    frames = ideal_gas(frames=3, seed=1)
    r, ours = partial_rdf(frames, ("Li", "O"), r_max=4.0, bins=20)
    theirs, r_ase = get_rdf(frames, 4.0, 20, elements=("Li", "O"))
    np.testing.assert_allclose(r, r_ase)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    r, ours = partial_rdf(frames, ("O", "O"), r_max=4.0, bins=20)
    theirs, _ = get_rdf(frames, 4.0, 20, elements=("O", "O"))  # normalised by N_O, not N_O − 1
    np.testing.assert_allclose(ours * 59 / 60, theirs, rtol=1e-10)


def coordination(frames, pair, r_max, bins=400):
    """Peak position and number of B atoms within r_max of an A atom, from g_AB."""
    r, g = partial_rdf(frames, pair, r_max, bins)
    edges = np.linspace(0.0, r_max, bins + 1)
    n_b = (frames[0].symbols == pair[1]).sum() - (pair[0] == pair[1])
    shells = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    return r[g.argmax()], (g * shells * n_b / frames[0].get_volume()).sum()


def test_lattices_have_their_shells_and_coordination_numbers():
    a = 2.5
    cubic = bulk("Po", "sc", a=a).repeat(4)  # 64 atoms
    peak, neighbours = coordination([cubic], ("Po", "Po"), 1.2 * a)
    assert peak == pytest.approx(a, abs=0.01) and neighbours == pytest.approx(6.0)
    salt = bulk("CsCl", "cesiumchloride", a=4.1).repeat(3)
    peak, neighbours = coordination([salt], ("Cs", "Cl"), 1.0 * 4.1)
    assert peak == pytest.approx(4.1 * np.sqrt(3) / 2, abs=0.01) and neighbours == pytest.approx(
        8.0
    )
    peak, neighbours = coordination([salt], ("Cl", "Cl"), 1.2 * 4.1)
    assert peak == pytest.approx(4.1, abs=0.01) and neighbours == pytest.approx(6.0)
    r, g_ab = partial_rdf([salt], ("Cs", "Cl"), 5.0)
    np.testing.assert_allclose(g_ab, partial_rdf([salt], ("Cl", "Cs"), 5.0)[1])


def test_molecule_partial_density_counts_neighbours():
    water = molecule("H2O")
    r, density = partial_rdf([water], ("O", "H"), r_max=3.0, bins=300)
    assert density.sum() * (r[1] - r[0]) == pytest.approx(2.0)  # two H per O
    assert r[density.argmax()] == pytest.approx(0.97, abs=0.01)
    r, density = partial_rdf([water], ("H", "H"), r_max=3.0, bins=300)
    assert density.sum() * (r[1] - r[0]) == pytest.approx(1.0)
    assert r[density.argmax()] == pytest.approx(1.52, abs=0.015)
