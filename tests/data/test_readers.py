import bz2
import gzip
import lzma
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from euclidnn.data import Structure
from euclidnn.data.readers import read, read_npz

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def shared(name):
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"third-party test data {name} not found in ../shared/data")
    return path


def labelled(atoms, rng, stress=False):
    atoms = atoms.copy()
    atoms.positions += 0.05 * rng.normal(size=atoms.positions.shape)
    results = dict(energy=rng.normal() * len(atoms), forces=rng.normal(size=(len(atoms), 3)))
    if stress:
        results["stress"] = rng.normal(size=6)
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def frames(rng):
    crystal = bulk("Si", "diamond", a=5.43).repeat((1, 1, 2))
    crystal.set_cell(crystal.cell.array + 0.1 * rng.normal(size=(3, 3)), scale_atoms=True)
    return [labelled(molecule("CH3CH2OH"), rng, stress=False) for _ in range(3)], [
        labelled(crystal, rng, stress=True) for _ in range(2)
    ]


@pytest.mark.parametrize("suffix", ["xyz", "db", "traj"])
def test_round_trip_identical(tmp_path, suffix):
    rng = np.random.default_rng(0)
    for group, atoms_list in enumerate(frames(rng)):
        path = tmp_path / f"data{group}.{suffix}"
        ase.io.write(path, atoms_list)
        structures = read(path)
        assert len(structures) == len(atoms_list)
        tol = 1e-7 if suffix == "xyz" else 0  # extxyz writes 8 decimals
        for s, atoms, direct in zip(structures, atoms_list, ase.io.read(path, ":")):
            assert s.numbers.tolist() == atoms.numbers.tolist()
            # identical to what ASE itself reads back from the file ...
            assert np.array_equal(s.positions, direct.positions)
            assert np.array_equal(s.cell, direct.cell.array)
            assert s.energy == direct.get_potential_energy()
            assert np.array_equal(s.forces, direct.get_forces())
            # ... and to what was written, up to the file's precision
            np.testing.assert_allclose(s.positions, atoms.positions, rtol=0, atol=tol)
            np.testing.assert_allclose(s.cell, atoms.cell.array, rtol=0, atol=tol)
            assert s.pbc.tolist() == atoms.pbc.tolist()
            assert s.energy == pytest.approx(atoms.get_potential_energy(), abs=tol)
            np.testing.assert_allclose(s.forces, atoms.get_forces(), rtol=0, atol=tol)
            if atoms.pbc.any():
                expected = atoms.get_stress(voigt=False)
                np.testing.assert_allclose(s.stress, expected, rtol=0, atol=tol)
            else:
                assert s.stress is None
            back = s.to_ase()
            assert np.array_equal(back.get_forces(), s.forces)
            if atoms.pbc.any():
                assert np.array_equal(back.get_stress(voigt=False), s.stress)


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_a_compressed_file_reads_as_the_plain_one(tmp_path, compression):
    """Compressed files are decompressed in memory before ASE parses them (ASE's extxyz reader
    seeks back to every frame); the frames are those of the plain file, and a damaged archive
    is an error naming the file."""
    rng = np.random.default_rng(7)
    plain = tmp_path / "data.xyz"
    ase.io.write(plain, frames(rng)[0])
    packed = tmp_path / f"data.xyz.{compression}"
    opener = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}[compression]
    with opener(packed, "wb") as stream:
        stream.write(plain.read_bytes())
    expected, got = read(plain), read(packed, index="1:")
    assert len(got) == 2
    for s, e in zip(got, expected[1:]):
        assert np.array_equal(s.positions, e.positions) and np.array_equal(s.forces, e.forces)
        assert s.energy == e.energy and np.array_equal(s.cell, e.cell)
    damaged = tmp_path / f"bad.xyz.{compression}"
    damaged.write_bytes(packed.read_bytes()[:-30])
    with pytest.raises(ValueError, match=rf"bad\.xyz\.{compression}: frame 0: cannot read"):
        read(damaged)


def test_index_selects_frames(tmp_path):
    rng = np.random.default_rng(1)
    atoms_list, _ = frames(rng)
    path = tmp_path / "data.xyz"
    ase.io.write(path, atoms_list)
    energies = [a.get_potential_energy() for a in atoms_list]
    assert [s.energy for s in read(path, "1:")] == pytest.approx(energies[1:])
    assert [s.energy for s in read(path, -1)] == pytest.approx(energies[-1:])
    with pytest.raises(ValueError, match=r"data\.xyz: index 7: .*3 frames"):
        read(path, 7)


@pytest.mark.parametrize(
    "energy_unit, length_unit, factor_e, factor_l",
    [
        ("kcal/mol", "Å", units.kcal / units.mol, 1.0),
        ("kJ/mol", "nm", units.kJ / units.mol, units.nm),
        ("Hartree", "Bohr", units.Hartree, units.Bohr),
        ("eV", "Å", 1.0, 1.0),
    ],
)
def test_unit_conversion_against_ase_units(tmp_path, energy_unit, length_unit, factor_e, factor_l):
    atoms = molecule("H2O")
    atoms.positions /= factor_l  # file in length_unit
    atoms.info["E"] = -3.0 / factor_e
    atoms.arrays["F"] = np.arange(9.0).reshape(3, 3)
    path = tmp_path / "w.xyz"
    ase.io.write(path, atoms)
    (s,) = read(
        path, energy_unit=energy_unit, length_unit=length_unit, energy_key="E", forces_key="F"
    )
    np.testing.assert_allclose(s.positions, molecule("H2O").positions, atol=1e-12)
    assert s.energy == pytest.approx(-3.0, rel=1e-12)
    np.testing.assert_allclose(s.forces, np.arange(9.0).reshape(3, 3) * factor_e / factor_l)
    # explicit forces unit wins over energy/length
    (s,) = read(
        path,
        energy_unit=energy_unit,
        length_unit=length_unit,
        energy_key="E",
        forces_key="F",
        forces_unit="eV/Å",
    )
    np.testing.assert_allclose(s.forces, np.arange(9.0).reshape(3, 3))


def test_npz_md17(tmp_path):
    rng = np.random.default_rng(2)
    base = molecule("CH4").positions
    positions = base + 0.05 * rng.normal(size=(4, 5, 3))
    energies = -25000.0 + rng.normal(size=(4, 1))  # kcal/mol, MD17 layout [n_frames, 1]
    forces = rng.normal(size=(4, 5, 3))
    path = tmp_path / "md17.npz"
    np.savez(path, R=positions, z=molecule("CH4").numbers, E=energies, F=forces)
    structures = read(path, energy_unit="kcal/mol")
    assert len(structures) == 4
    kcal = units.kcal / units.mol
    assert [s.energy for s in structures] == pytest.approx((energies[:, 0] * kcal).tolist())
    np.testing.assert_allclose(structures[2].forces, forces[2] * kcal)
    np.testing.assert_allclose(structures[3].positions, positions[3])
    # renamed keys (revised MD17 style) and a slice
    np.savez(
        tmp_path / "r.npz",
        coords=positions,
        nuclear_charges=molecule("CH4").numbers,
        energies=energies[:, 0],
        forces=forces,
    )
    assert len(read_npz(tmp_path / "r.npz", "::2", energy_unit="kcal/mol")) == 2
    np.savez(tmp_path / "k.npz", pos=positions, Z=molecule("CH4").numbers)
    (s,) = read_npz(tmp_path / "k.npz", 0, positions_key="pos")
    assert s.energy is None and s.num_atoms == 5
    with pytest.raises(ValueError, match="positions: none of the keys"):
        read_npz(tmp_path / "k.npz")


# --- per atom or per structure: by key and where ASE keeps it, never by length ----------


def water_with_tensors():
    """A 3-atom molecule whose per-structure labels have 3 rows: the length rule's trap."""
    atoms = molecule("H2O")
    dipole = np.array([0.1, -0.2, 0.7])
    atoms.calc = SinglePointCalculator(
        atoms, energy=-2000.0, forces=np.zeros((3, 3)), dipole=dipole, charges=[-0.8, 0.4, 0.4]
    )
    atoms.info["polarizability"] = np.diag([1.0, 2.0, 3.0]) + 0.1  # [3, 3] per structure
    atoms.info["rotational_constants"] = np.array([27.9, 14.5, 9.5])  # [3] per structure
    atoms.arrays["hirshfeld_volume"] = np.array([20.0, 5.0, 5.0])  # [3] per atom
    return atoms, dipole


def check_water(s, dipole):
    assert set(s.properties) == {"dipole", "polarizability", "rotational_constants"}
    assert s.properties["dipole"].shape == (3,)
    np.testing.assert_allclose(s.properties["dipole"], dipole)
    assert s.properties["polarizability"].shape == (3, 3)
    assert set(s.atom_properties) == {"charges", "hirshfeld_volume"}  # ASE: charges per atom
    np.testing.assert_allclose(s.atom_properties["charges"], [-0.8, 0.4, 0.4])


def test_three_atom_dipole_stays_per_structure_in_extxyz(tmp_path):
    atoms, dipole = water_with_tensors()
    path = write_xyz(tmp_path / "water.xyz", [atoms])
    assert "dipole" in ase.io.read(path).calc.results  # ASE moved it to the calculator
    (s,) = read(path)
    check_water(s, dipole)


def test_three_atom_dipole_stays_per_structure_in_a_database(tmp_path):
    from ase.db import connect

    atoms, dipole = water_with_tensors()
    path = tmp_path / "water.db"
    with connect(path) as db:
        # calculator results become columns; atoms.info / arrays do not survive a database,
        # so the other tensors go to row.data (which ASE does not classify: per structure)
        db.write(
            atoms,
            rotational_constants_ghz=1.0,
            data={
                "polarizability": atoms.info["polarizability"],
                "rotational_constants": atoms.info["rotational_constants"],
                "hirshfeld_volume": atoms.arrays["hirshfeld_volume"],
            },
        )
    (s,) = read(path)
    assert s.properties["dipole"].shape == (3,)
    np.testing.assert_allclose(s.properties["dipole"], dipole)
    assert s.properties["polarizability"].shape == (3, 3)
    assert s.properties["rotational_constants"].shape == (3,)
    assert s.properties["hirshfeld_volume"].shape == (3,)  # unknown name in row.data
    assert s.properties["rotational_constants_ghz"].shape == ()  # key-value pair
    assert set(s.atom_properties) == {"charges"}
    (s,) = read(path, per_atom_keys=["hirshfeld_volume"])
    np.testing.assert_allclose(s.atom_properties["hirshfeld_volume"], [20.0, 5.0, 5.0])
    assert "hirshfeld_volume" not in s.properties


def test_per_atom_and_per_structure_keys_override_the_rule(tmp_path):
    atoms, dipole = water_with_tensors()
    atoms.info["site_charges"] = np.array([-0.7, 0.35, 0.35])  # per atom, kept in info
    atoms.info["quadrupole"] = np.arange(5.0)  # traceless symmetric, 5 components
    path = write_xyz(tmp_path / "water.xyz", [atoms])
    (s,) = read(path)
    assert s.properties["site_charges"].shape == (3,)  # info is per structure by default
    assert s.properties["quadrupole"].shape == (5,)
    (s,) = read(
        path, per_atom_keys=("site_charges",), per_structure_keys={"hirshfeld_volume", "charges"}
    )
    np.testing.assert_allclose(s.atom_properties["site_charges"], [-0.7, 0.35, 0.35])
    assert set(s.atom_properties) == {"site_charges"}
    np.testing.assert_allclose(s.properties["hirshfeld_volume"], [20.0, 5.0, 5.0])
    np.testing.assert_allclose(s.properties["charges"], [-0.8, 0.4, 0.4])
    np.testing.assert_allclose(s.properties["dipole"], dipole)
    # a per-atom key must have one row per atom
    with pytest.raises(ValueError, match=r"water\.xyz: frame 0: property 'quadrupole'.*3 atoms"):
        read(path, per_atom_keys=["quadrupole"])
    with pytest.raises(ValueError, match=r"water\.xyz: \['dipole'\] in both"):
        read(path, per_atom_keys=["dipole"], per_structure_keys=["dipole"])


# --- the three third-party databases -------------------------------------------------------


def test_qm9_units_from_metadata():
    structures = read(shared("qm9_20.db"), energy_key="energy_U0")
    assert len(structures) == 20
    from ase.db import connect

    row = next(connect(shared("qm9_20.db")).select())
    s = structures[0]
    assert s.energy == pytest.approx(float(row.data["energy_U0"][0]) * units.Hartree)
    assert s.properties["homo"] == pytest.approx(float(row.data["homo"][0]) * units.Hartree)
    assert s.properties["isotropic_polarizability"] == pytest.approx(
        float(row.data["isotropic_polarizability"][0]) * units.Bohr**3
    )
    assert s.properties["homo"].shape == ()
    assert s.forces is None and not s.pbc.any()
    assert {1, 6, 7, 8} >= set(np.concatenate([x.numbers for x in structures]).tolist())
    # energy per atom of organic molecules in eV: hundreds, not tens of thousands
    assert all(-2000 < x.energy / x.num_atoms < -100 for x in structures)


def test_iso17_forces_in_row_data():
    structures = read(shared("iso17_40.db"), energy_key="total_energy", forces_key="atomic_forces")
    assert len(structures) == 40
    assert all(s.num_atoms == 19 and s.forces.shape == (19, 3) for s in structures)
    assert sorted(set(structures[0].numbers.tolist())) == [1, 6, 8]
    assert -11600 < structures[0].energy < -11400  # eV, C7O2H10
    # without the key the forces are not found, and nothing else is invented
    assert read(shared("iso17_40.db"), energy_key="total_energy")[0].forces is None


def test_si16_periodic_with_stress():
    (s,) = read(shared("si16_periodic.db"))
    assert s.pbc.all() and s.num_atoms == 16 and set(s.numbers.tolist()) == {14}
    assert s.stress.shape == (3, 3)
    np.testing.assert_allclose(s.stress, s.stress.T)
    assert s.forces.shape == (16, 3) and np.abs(s.forces).max() > 0
    assert abs(np.linalg.det(s.cell)) > 100
    assert -700 < s.energy / 16 < -600  # eV/atom, as stored (all-electron-like reference)


# --- bad input -----------------------------------------------------------------------------


def write_xyz(path, atoms_list):
    ase.io.write(path, atoms_list, format="extxyz")
    return path


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.xyz"):
        read(tmp_path / "nope.xyz")


def test_truncated_extxyz(tmp_path):
    rng = np.random.default_rng(3)
    path = write_xyz(tmp_path / "t.xyz", frames(rng)[0])
    text = path.read_text()
    path.write_text(text[: len(text) - 40])
    with pytest.raises(ValueError, match=r"t\.xyz: frame 2: cannot read"):
        read(path)


def test_unreadable_extxyz(tmp_path):
    path = tmp_path / "garbage.xyz"
    path.write_text("3\nProperties=species:S:1:pos:R:3\nO 0 0 zero\nH 1 0 0\nH 0 1 0\n")
    with pytest.raises(ValueError, match=r"garbage\.xyz: frame 0"):
        read(path)


def test_unknown_element(tmp_path):
    path = write_xyz(tmp_path / "u.xyz", [molecule("H2O"), molecule("H2O")])
    lines = path.read_text().splitlines()
    lines[7] = lines[7].replace("O", "Xq", 1)  # first atom of the second frame
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"u\.xyz: frame 1: .*Xq"):
        read(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_coordinates(tmp_path, bad):
    atoms = [molecule("H2O"), molecule("H2O")]
    atoms[1].positions[2, 0] = bad
    path = write_xyz(tmp_path / "n.xyz", atoms)
    with pytest.raises(ValueError, match=r"n\.xyz: frame 1: positions: contains NaN or inf"):
        read(path)


def test_atoms_too_close(tmp_path):
    atoms = molecule("H2O")
    atoms.positions[2] = atoms.positions[0] + [0.0, 0.0, 0.05]
    with pytest.raises(ValueError, match=r"c\.xyz: frame 0: positions: atoms 0 and 2 .*0\.050 Å"):
        read(write_xyz(tmp_path / "c.xyz", [atoms]))
    # also through a periodic image
    crystal = Atoms("H2", positions=[[0, 0, 0.01], [0, 0, 2.96]], cell=np.eye(3) * 3, pbc=True)
    with pytest.raises(ValueError, match=r"frame 0: positions: .*periodic image"):
        read(write_xyz(tmp_path / "p.xyz", [crystal]))


def test_forces_mixed(tmp_path):
    rng = np.random.default_rng(4)
    atoms_list = frames(rng)[0]
    atoms_list[1].calc = SinglePointCalculator(atoms_list[1], energy=-1.0)  # no forces
    path = write_xyz(tmp_path / "m.xyz", atoms_list)
    message = r"m\.xyz: frame 1: forces: missing, but present in frame 0"
    with pytest.raises(ValueError, match=message):
        read(path)


def test_singular_cell_with_pbc(tmp_path):
    atoms = Atoms(
        "Si2",
        positions=[[0, 0, 0], [1.0, 1.0, 1.0]],
        cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]],
        pbc=True,
    )
    path = write_xyz(tmp_path / "s.xyz", [atoms])
    with pytest.raises(ValueError, match=r"s\.xyz: frame 0: cell: singular"):
        read(path)
    # the same cell is fine when that direction is not periodic
    with pytest.raises(ValueError, match="cell: singular"):
        Structure(
            [14, 14], [[0, 0, 0], [1, 1, 1]], cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]], pbc=True
        )
    Structure(
        [14, 14],
        [[0, 0, 0], [1, 1, 1]],
        cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]],
        pbc=[True, True, False],
    )


def test_energy_in_wrong_unit(tmp_path):
    atoms = molecule("H2O")
    atoms.calc = SinglePointCalculator(atoms, energy=-47900.0)  # kcal/mol, read as eV
    path = write_xyz(tmp_path / "e.xyz", [molecule("H2O"), atoms])
    with pytest.raises(ValueError, match=r"e\.xyz: frame 1: energy: .*energy_unit"):
        read(path)
    # with the right unit it is fine
    (s,) = read(path, "1", energy_unit="kcal/mol")
    assert s.energy == pytest.approx(-47900.0 * units.kcal / units.mol)


def test_unknown_unit_name(tmp_path):
    path = write_xyz(tmp_path / "w.xyz", [molecule("H2O")])
    with pytest.raises(ValueError, match="unknown unit 'kcl'"):
        read(path, energy_unit="kcl/mol")


def test_npz_errors(tmp_path):
    positions = molecule("CH4").positions[None].repeat(3, axis=0)
    np.savez(tmp_path / "a.npz", R=positions, z=[6, 1, 1, 1, 1], E=np.zeros(2))
    with pytest.raises(ValueError, match=r"a\.npz: energy: 2 frames, positions have 3"):
        read(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", R=positions, z=[6, 1, 1, 1])
    with pytest.raises(ValueError, match=r"b\.npz: numbers"):
        read(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", R=positions, z=[6, 1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"c\.npz: energy: none of the keys \['U0'\]"):
        read_npz(tmp_path / "c.npz", energy_key="U0")
    bad = positions.copy()
    bad[2, 1, 0] = np.nan
    np.savez(tmp_path / "d.npz", R=bad, z=[6, 1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"d\.npz: frame 2: positions: contains NaN"):
        read(tmp_path / "d.npz")
