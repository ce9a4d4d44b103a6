"""Analysis: distributions on known cases, VDOS peak position, the model's Hessian against
finite differences of its forces, normal modes against ASE's Vibrations, and `euclidnn
analyze` on real run folders (classical and PIMD overlaid)."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from euclidnn.cli.__main__ import main
from euclidnn.md import Calculator, MDConfig, PIMDConfig, run_md, run_pimd
from euclidnn.md.analysis import (
    model_hessian,
    nearest_neighbor_distances,
    normal_modes,
    pair_distribution,
    reference_hessian,
    velocity_autocorrelation,
    vibrational_density_of_states,
)
from euclidnn.models import save_model


def test_periodic_pair_distribution_of_an_ideal_gas_is_one():
    rng = np.random.default_rng(0)
    frames = [Atoms("H64", positions=rng.random((64, 3)) * 8.0, cell=np.eye(3) * 8.0, pbc=True)
              for _ in range(40)]  # fmt: skip
    r, g = pair_distribution(frames, r_max=4.0, bins=8)
    np.testing.assert_allclose(g[2:], 1.0, atol=0.1)  # shells from 1 Å on hold enough pairs


def test_molecular_pair_density_counts_neighbours_and_nearest_neighbours():
    atoms = molecule("C6H6")
    r, density = pair_distribution([atoms], r_max=10.0, bins=500)
    assert density.sum() * (r[1] - r[0]) == pytest.approx(len(atoms) - 1)
    nearest = nearest_neighbor_distances([atoms])
    assert nearest == pytest.approx(1.087, abs=0.01)  # every atom's nearest is across a C–H
    silicon = bulk("Si", "diamond", a=5.43)  # 2 atoms, neighbours only as periodic images
    assert nearest_neighbor_distances([silicon]) == pytest.approx(5.43 * 3**0.5 / 4)


def test_vdos_peaks_at_the_oscillation_wavenumber():
    wavenumber, interval_fs = 1500.0, 1.0  # cm⁻¹
    period_fs = 1e15 / (wavenumber * 2.99792458e10)
    t = np.arange(2000) * interval_fs
    velocities = np.cos(2 * np.pi * t / period_fs)[:, None, None] * np.ones((1, 3, 3))
    x, density = vibrational_density_of_states(velocity_autocorrelation(velocities), interval_fs)
    assert x[density.argmax()] == pytest.approx(wavenumber, abs=20.0)


def test_model_hessian_is_the_derivative_of_the_forces(schnet, ethanol):
    hessian = model_hessian(schnet, ethanol)
    calculator = Calculator(schnet)
    step = 1e-5
    for atom, axis in [(0, 0), (3, 2), (8, 1)]:
        forces = []
        for sign in (1, -1):
            displaced = ethanol.copy()
            displaced.positions[atom, axis] += sign * step
            forces.append(calculator.get_forces(displaced).reshape(-1))
        column = -(forces[0] - forces[1]) / (2 * step)
        np.testing.assert_allclose(hessian[:, 3 * atom + axis], column, atol=1e-6)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-10)


def test_normal_modes_match_ase_vibrations_with_gfn2_xtb(tmp_path):
    tblite = pytest.importorskip("tblite.ase")
    from ase.optimize import BFGS
    from ase.vibrations import Vibrations

    atoms = molecule("H2O")
    atoms.calc = tblite.TBLite(method="GFN2-xTB", verbosity=0)
    BFGS(atoms, logfile=None).run(fmax=1e-4)
    modes = normal_modes(reference_hessian(atoms, atoms.calc), atoms)
    assert len(modes.wavenumbers) == 3  # 3N − 6, rigid motions projected out
    vibrations = Vibrations(
        atoms, name=str(tmp_path / "vib")
    )  # ASE's own frequencies, no projection
    vibrations.run()
    theirs = np.sort(vibrations.get_vibrations().get_energies().real)[-3:] / 1.23984198e-4
    np.testing.assert_allclose(modes.wavenumbers, theirs, rtol=2e-3)
    assert 1400 < modes.wavenumbers[0] < 1700 and modes.wavenumbers[2] > 3400  # bend, stretches


def test_analyze_overlays_classical_and_pimd_runs(schnet, tmp_path):
    save_model(schnet, tmp_path / "model.safetensors")
    water = molecule("H2O")
    run_md(water, Calculator(schnet), MDConfig(steps=60, trajectory_interval=2), tmp_path / "md",
           progress=False)  # fmt: skip
    run_pimd(tmp_path / "model.safetensors", water, PIMDConfig(beads=2, steps=20, timestep=0.25,
             trajectory_interval=5), tmp_path / "pimd", progress=False)  # fmt: skip
    out = tmp_path / "plots"
    runs = [str(tmp_path / "md"), str(tmp_path / "pimd")]
    assert main(["analyze", *runs, "--out", str(out), "--model", str(tmp_path / "model.safetensors"),
                 "--structure", "H2O", "--reference", "none", "--no-optimize"]) == 0  # fmt: skip
    for name in ("distributions.png", "energy.png", "dynamics.png", "normal_modes.png"):
        assert (out / name).stat().st_size > 1000, name
    report = json.loads((out / "analysis.json").read_text())
    assert [r["kind"] for r in report["runs"].values()] == ["md", "pimd"]
    assert report["runs"][runs[1]]["frames"] == 2 * 4  # 2 beads × 4 frames after --skip 0.2
    assert len(report["normal_modes"]["model_cm-1"]) == 3
    assert (out / "normal_modes.csv").read_text().startswith("mode,model_cm-1")
