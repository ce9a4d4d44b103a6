"""``euclidnn symmetry``: group, elements, allowed properties, --symmetrize, --plot-signal."""

import ase.io
import matplotlib
import numpy as np
from ase.build import bulk, molecule

from euclidnn.cli.__main__ import main
from euclidnn.symmetry import point_group


def test_molecule_file_symmetrize_and_plot(tmp_path, capsys, monkeypatch):
    def no_backend_switch(*args, **kwargs):
        raise AssertionError("euclidnn must not choose matplotlib's backend")

    monkeypatch.setattr(matplotlib, "use", no_backend_switch)
    noisy = molecule("C6H6")
    noisy.positions += np.random.default_rng(0).normal(0, 0.01, noisy.positions.shape)
    ase.io.write(tmp_path / "benzene.xyz", noisy)
    out, png = tmp_path / "clean.xyz", tmp_path / "signal.png"
    status = main(
        ["symmetry", str(tmp_path / "benzene.xyz"), "--operations", "--symmetrize", str(out)]
        + ["--plot-signal", str(png), "--atom", "0"]
    )
    text = capsys.readouterr().out
    assert status == 0
    assert "point group D6h, order 24" in text
    assert "dipole (polar vector)" in text and "forbidden" in text
    assert text.count(" axis (") == 22  # every element but E and i has an axis
    assert point_group(ase.io.read(out), tolerance=1e-5).name == "D6h"  # file: 8 decimals
    assert png.stat().st_size > 20_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benzene.xyz", "clean.xyz", "signal.png"]


def test_crystal_and_molecule_name(tmp_path, capsys):
    ase.io.write(tmp_path / "nacl.cif", bulk("NaCl", "rocksalt", a=5.64))
    assert main(["symmetry", str(tmp_path / "nacl.cif")]) == 0
    text = capsys.readouterr().out
    assert "space group Fm-3m (No. 225)" in text and "crystal class Oh" in text
    assert main(["symmetry", "CO2"]) == 0
    assert "point group Dinfh" in capsys.readouterr().out


def test_errors_exit_2(capsys):
    assert main(["symmetry", "no-such-file.xyz"]) == 2
    assert "error: structure" in capsys.readouterr().err
    assert main(["symmetry", "CH4", "--plot-signal", "x.png", "--atom", "9"]) == 2
    assert "--atom" in capsys.readouterr().err
