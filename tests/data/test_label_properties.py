"""`euclidnn label --properties`: DFT dipoles (e·Å) and polarizabilities (Å³), checked against
finite electric fields and PySCF's Debye output, written and read back with their units."""

import numpy as np
import pytest
from ase.build import molecule
from ase.units import Bohr, Debye

from euclidnn.cli.__main__ import main
from euclidnn.data import read
from euclidnn.data.label import Level, Sampling, label, make_labeller
from euclidnn.data.label.properties import dipole_moment, polarizability

pyscf = pytest.importorskip("pyscf")
pytest.importorskip("tblite")

SHORT = dict(equilibration=10, interval=3, seed=1)


def mean_field(atoms, field=(0.0, 0.0, 0.0), xc="pbe"):
    """Restricted KS (density fitted, sto-3g) with the perturbation H' = F·r (atomic units)."""
    from pyscf import dft, gto

    mol = gto.M(
        atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
        unit="Angstrom",
        basis="sto-3g",
        verbose=0,
    )
    mf = dft.RKS(mol, xc=xc).density_fit()
    mf.conv_tol = 1e-12
    charges = mol.atom_charges()
    with mol.with_common_orig(np.einsum("i,ix->x", charges, mol.atom_coords()) / charges.sum()):
        position = mol.intor_symmetric("int1e_r", comp=3)
    core = mf.get_hcore()
    mf.get_hcore = lambda *args: core + np.einsum("x,xij->ij", np.asarray(field), position)
    mf.kernel()
    return mf


@pytest.mark.slow  # ~7 s of field derivatives
def test_polarizability_is_the_field_derivative_of_the_dipole():
    atoms = molecule("NH3")
    atoms.positions[0] += [0.05, -0.03, 0.02]  # a distorted, asymmetric geometry
    mf = mean_field(atoms)
    alpha = polarizability(mf)  # Å³
    h = 1e-3  # atomic units of field
    finite = np.zeros((3, 3))
    for j in range(3):
        step = np.eye(3)[j] * h
        plus, minus = (
            dipole_moment(mean_field(atoms, step)),
            dipole_moment(mean_field(atoms, -step)),
        )
        finite[:, j] = (plus - minus) / (2 * h) / Bohr * Bohr**3  # (e·Å → e·a0) / field → Å³
    assert np.allclose(alpha, alpha.T, atol=1e-8)
    assert np.abs(alpha - finite).max() < 1e-4
    assert 0.2 < np.trace(alpha) / 3 < 3.0  # Å³: NH3 at sto-3g (experiment: 2.2 Å³)
    # the dipole in e·Å is PySCF's Debye value times ase.units.Debye
    debye = mf.dip_moment(unit="Debye", verbose=0)
    assert np.allclose(dipole_moment(mf), np.asarray(debye) * Debye, atol=1e-6)


def test_label_writes_dipoles_and_polarizabilities_with_units(tmp_path):
    level = Level("pbe", basis="sto-3g")
    path = tmp_path / "nh3.xyz"
    frames = label(
        "NH3",
        path,
        Sampling(2, **SHORT),
        level,
        threads=1,
        progress=False,
        properties=("dipole", "polarizability"),
    )
    info = frames[0].info
    assert info["properties"] == "dipole,polarizability"
    assert info["dipole_unit"] == "e*Angstrom" and info["polarizability_unit"] == "Angstrom^3"
    structures = read(path)
    assert structures[1].properties["dipole"].shape == (3,)
    assert structures[1].properties["polarizability"].shape == (3, 3)
    labeller = make_labeller(level, threads=1, properties=("dipole", "polarizability"))
    _, _, expected = labeller(frames[1])
    assert np.allclose(structures[1].properties["dipole"], expected["dipole"], atol=1e-6)
    assert np.allclose(
        structures[1].properties["polarizability"], expected["polarizability"], atol=1e-6
    )
    # resuming the same command labels nothing new and keeps the file
    again = label(
        "NH3", path, Sampling(2, **SHORT), level, threads=1, progress=False,
        properties=("dipole", "polarizability"),
    )  # fmt: skip
    assert len(again) == 2


def test_bad_property_requests_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="polarizability needs HF/DFT"):
        make_labeller(Level("gfn2-xtb"), properties=("polarizability",))
    with pytest.raises(ValueError, match="unknown \\['quadrupole'\\]"):
        make_labeller(Level("gfn2-xtb"), properties=("quadrupole",))
    out = str(tmp_path / "x.xyz")
    assert main(["label", "NH3", "-o", out, "-n", "1", "--properties", "spin"]) == 2
    assert "unknown ['spin']" in capsys.readouterr().err
    # xTB dipoles are available
    _, _, extra = make_labeller(Level("gfn2-xtb"), properties=("dipole",))(molecule("NH3"))
    assert extra["dipole"].shape == (3,) and np.linalg.norm(extra["dipole"]) > 0.05
