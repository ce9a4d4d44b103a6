"""`euclidnn analyze --angles --pairs --diffusion` on fabricated periodic run folders, written
the way `euclidnn md` writes them (``trajectory.xyz`` frame by frame with ASE's extxyz writer,
``summary.json`` by :func:`~euclidnn.md.run.write_summary`): a pyrophosphate P2O7 unit split
over the faces of a cubic cell, with Li atoms on random walks whose D follows an Arrhenius law.
"""

import io
import json

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from euclidnn.cli.__main__ import main
from euclidnn.md import MDConfig, MDResult
from euclidnn.md.run import write_summary

LENGTH, TIMESTEP_FS, INTERVAL = 10.0, 1.0, 10  # Å, fs, steps between frames
EA, D0 = 0.3, 20.0  # eV, Å²/ps
TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)


def pyrophosphate(angle_deg=140.0, bond=1.6) -> Atoms:
    """O3P–O–PO3: two regular PO4 tetrahedra sharing the O at the origin, P–O–P = angle."""
    half = np.radians(angle_deg) / 2
    atoms = Atoms("O", [[0.0, 0.0, 0.0]])
    for sign in (-1, 1):
        direction = np.array([sign * np.sin(half), np.cos(half), 0.0])
        tetrahedron = Atoms("PO4", np.vstack([[0, 0, 0], bond * TETRAHEDRON]))
        tetrahedron.rotate(TETRAHEDRON[0], -direction)  # first O onto the bridging one
        tetrahedron.translate(bond * direction)
        atoms += tetrahedron[[0, 2, 3, 4]]
    return atoms


def walk(temperature: float, frames: int = 400, li=16, seed=0, angle_deg=140.0) -> list[Atoms]:
    """Frames of a P2O7 unit (P–O–P = ``angle_deg``, rattled by 0.02 Å) and ``li`` Li walking
    with D(T) = D0 exp(−EA / k_B T), wrapped into the cell, ``INTERVAL`` steps apart."""
    rng = np.random.default_rng(seed)
    d = D0 * np.exp(-EA / (units.kB * temperature))
    sigma = np.sqrt(2 * d * INTERVAL * TIMESTEP_FS / 1000)  # Å per component per frame
    unit = pyrophosphate(angle_deg)
    symbols = unit.get_chemical_symbols() + ["Li"] * li
    lithium = rng.random((li, 3)) * LENGTH
    walked = []
    for _ in range(frames):
        while True:  # a step that puts no two atoms on top of each other (ideal gas else)
            positions = np.vstack([unit.positions + rng.normal(0, 0.02, (9, 3)),
                                   lithium + rng.normal(0, sigma, (li, 3))])  # fmt: skip
            atoms = Atoms(symbols, positions, cell=np.eye(3) * LENGTH, pbc=True)
            if (atoms.get_all_distances(mic=True) + 9 * np.eye(len(atoms))).min() > 0.3:
                break
        lithium = atoms.positions[9:]
        atoms.wrap()
        atoms.set_momenta(rng.normal(0, 0.1, (len(atoms), 3)))
        atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((len(atoms), 3)))
        walked.append(atoms)
    return walked


def write_run(folder, temperature: float, frames: int = 400, li=16, seed=0, angle_deg=140.0):
    """A run folder of :func:`walk`'s frames, as `euclidnn md` writes one."""
    folder.mkdir()
    with open(folder / "trajectory.xyz", "w") as trajectory:
        for atoms in walk(temperature, frames, li, seed, angle_deg):
            frame = io.StringIO()
            ase.io.write(frame, atoms, format="extxyz")
            trajectory.write(frame.getvalue())
    config = MDConfig(ensemble="nvt", temperature=temperature, timestep=TIMESTEP_FS,
                      steps=frames * INTERVAL, trajectory_interval=INTERVAL)  # fmt: skip
    result = MDResult(ensemble="nvt", steps=config.steps, timestep_fs=TIMESTEP_FS,
                      num_atoms=9 + li, degrees_of_freedom=3 * (9 + li), ns_per_day=1.0,
                      mean_temperature_K=temperature, energy_drift_meV_per_atom_per_ps=None,
                      wall_seconds=1.0)  # fmt: skip
    write_summary(folder, result, config)


def write_labelled(path, runs: list[tuple[float, list[Atoms]]], md: bool = True):
    """Frames as `euclidnn label` writes them: each run one reference MD (its sampling keys,
    ``md_step`` growing by the interval), or (``md=False``) rattled copies without a time."""
    frames = []
    for seed, (temperature, walked) in enumerate(runs):
        for k, atoms in enumerate(walked):
            atoms = atoms.copy()
            atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((len(atoms), 3)))
            if md:
                atoms.info.update(sampler="Langevin MD, GFN1-xTB (tblite)", sampling_seed=seed,
                                  sampling_temperature_K=temperature, sampling_interval=INTERVAL,
                                  sampling_timestep_fs=TIMESTEP_FS, sampling_frame=k,
                                  md_step=200 + INTERVAL * (k + 1))  # fmt: skip
            else:
                atoms.info.update(sampler="rattle 0.05 A", sampling_frame=k)
            frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


def test_pyrophosphate_is_what_the_tests_assume():
    unit = pyrophosphate()
    assert unit.get_angle(1, 0, 5) == pytest.approx(140.0)
    for p in (1, 5):
        terminal = [p + 1, p + 2, p + 3]
        assert unit.get_distances(p, [0, *terminal]) == pytest.approx([1.6] * 4)
        assert unit.get_angle(terminal[0], p, terminal[1]) == pytest.approx(109.4712, abs=1e-4)


OPTIONS = ["--angles", "P-O-P:1.9,O-P-O:1.9", "--pairs", "Li-O,P-O", "--diffusion", "Li"]


def test_analyze_glass_run_writes_plots_and_numbers(tmp_path):
    write_run(tmp_path / "run_800K", 800.0)
    out = tmp_path / "plots"
    assert main(["analyze", str(tmp_path / "run_800K"), "--out", str(out), *OPTIONS]) == 0
    for name in ("angles.png", "partial_rdf.png", "msd_species.png", "distributions.png"):
        assert (out / name).stat().st_size > 1000, name
    report = json.loads((out / "analysis.json").read_text())
    run = report["runs"][str(tmp_path / "run_800K")]
    assert run["angles"]["P-O-P"]["angles_per_frame"] == 1  # across the cell's faces
    assert run["angles"]["P-O-P"]["mean_deg"] == pytest.approx(140.0, abs=2.0)
    assert run["angles"]["O-P-O"]["angles_per_frame"] == 12  # 6 at each P
    assert run["angles"]["O-P-O"]["mean_deg"] == pytest.approx(109.47, abs=1.0)
    assert run["partial_rdf"]["P-O"]["first_peak_A"] == pytest.approx(1.6, abs=0.05)
    assert run["partial_rdf"]["Li-O"]["r_max_A"] == pytest.approx(5.0)  # half the 10 Å cell
    li = run["diffusion"]["Li"]
    d = D0 * np.exp(-EA / (units.kB * 800.0))
    assert li["D_A2_per_ps"] == pytest.approx(d, rel=0.3)
    assert li["D_cm2_per_s"] == pytest.approx(li["D_A2_per_ps"] * 1e-4)
    assert li["D_stderr_cm2_per_s"] == pytest.approx(li["D_stderr_A2_per_ps"] * 1e-4)
    assert len(li["block_D_A2_per_ps"]) == 5 and li["centre_of_mass_removed"] is True
    assert report["arrhenius"] == {}  # one temperature


def test_analyze_says_how_far_apart_two_runs_distributions_are(tmp_path, capsys):
    """Two runs with the same tetrahedra and bridges 140° and 125° apart: the P–O–P densities
    do not overlap (distance 2), the O–P–O ones and the P–O g(r) nearly coincide; each run
    against itself is at 0, and its angles' sampling level is above 0."""
    write_run(tmp_path / "wide", 800.0, frames=100)
    write_run(tmp_path / "narrow", 800.0, frames=100, seed=1, angle_deg=125.0)
    runs = [str(tmp_path / name) for name in ("wide", "narrow", "wide")]
    options = ["--angles", "P-O-P:1.9,O-P-O:1.9", "--pairs", "P-O", "--skip", "0"]
    assert main(["analyze", *runs, "--out", str(tmp_path / "a"), *options]) == 0
    distances = json.loads((tmp_path / "a" / "analysis.json").read_text())["distances"]
    bridge, tetrahedral, shell = (distances[k] for k in ("P-O-P angle", "O-P-O angle", "P-O g(r)"))
    assert set(bridge) == {"wide (classical) vs narrow (classical)",
                           "wide (classical) vs wide (classical)",
                           "narrow (classical) vs wide (classical)"}  # fmt: skip
    apart, same = (
        bridge["wide (classical) vs narrow (classical)"],
        bridge["wide (classical) vs wide (classical)"],
    )
    assert apart["distance"] == pytest.approx(2.0) and apart["counts"] == [100, 100]
    assert same["distance"] == 0 and 0 < same["same_distribution_level"] < 0.5
    assert tetrahedral["wide (classical) vs narrow (classical)"]["distance"] < 0.6
    assert 0 < shell["wide (classical) vs narrow (classical)"]["distance"] < 0.6
    assert shell["wide (classical) vs wide (classical)"]["distance"] == 0
    printed = capsys.readouterr().out
    assert (
        "P-O-P angle, wide (classical) vs narrow (classical): integrated |difference| 2.000"
        in printed
    )


@pytest.mark.slow  # ~9 s: three MD runs
def test_analyze_fits_arrhenius_over_three_temperatures(tmp_path):
    runs = []
    for k, temperature in enumerate([600.0, 800.0, 1000.0]):
        runs.append(str(tmp_path / f"run_{temperature:.0f}K"))
        write_run(tmp_path / f"run_{temperature:.0f}K", temperature, frames=500, seed=k)
    out = tmp_path / "plots"
    assert main(["analyze", *runs, "--out", str(out), "--diffusion", "Li", "--blocks", "4"]) == 0
    fit = json.loads((out / "analysis.json").read_text())["arrhenius"]["Li"]
    assert fit["temperatures_K"] == [600.0, 800.0, 1000.0] and fit["weighted_by_block_errors"]
    error = fit["activation_energy_stderr_eV"]
    assert 0 < error < 0.05 and abs(fit["activation_energy_eV"] - EA) < 4 * error
    assert not (out / "angles.png").exists()


def test_analyze_reads_the_reference_methods_own_md_from_a_labelled_file(tmp_path):
    temperatures = [600.0, 800.0, 1000.0]
    walks = [walk(t, frames=200, seed=k) for k, t in enumerate(temperatures)]
    folders = []
    for k, temperature in enumerate(temperatures):
        folders.append(str(tmp_path / f"run_{temperature:.0f}K"))
        write_run(tmp_path / f"run_{temperature:.0f}K", temperature, frames=200, seed=k)
    write_labelled(tmp_path / "reference.xyz", list(zip(temperatures, walks)))
    options = ["--diffusion", "Li", "--blocks", "4", "--angles", "P-O-P:1.9"]
    assert main(["analyze", *folders, "--out", str(tmp_path / "a"), *options]) == 0
    assert main(["analyze", str(tmp_path / "reference.xyz"), "--out", str(tmp_path / "b"),
                 *options]) == 0  # fmt: skip
    folder_report = json.loads((tmp_path / "a" / "analysis.json").read_text())
    file_report = json.loads((tmp_path / "b" / "analysis.json").read_text())
    runs = list(file_report["runs"].values())
    assert [run["thermostat_temperature_K"] for run in runs] == temperatures  # three MD runs
    assert [run["first_frame"] for run in runs] == [0, 200, 400]
    for run, folder in zip(runs, folder_report["runs"].values()):  # the same frames: the same D
        assert run["diffusion"]["Li"] == folder["diffusion"]["Li"]
        assert run["angles"] == folder["angles"]
    assert file_report["arrhenius"]["Li"] == folder_report["arrhenius"]["Li"]
    # both together: the model's runs and the reference's are fitted apart, not pooled
    both = [*folders[:2], str(tmp_path / "reference.xyz")]
    assert main(["analyze", *both, "--out", str(tmp_path / "c"), "--diffusion", "Li",
                 "--blocks", "4"]) == 0  # fmt: skip
    fits = json.loads((tmp_path / "c" / "analysis.json").read_text())["arrhenius"]
    assert list(fits) == ["Li (reference)"]  # two model runs: no fit of their own
    assert fits["Li (reference)"] == folder_report["arrhenius"]["Li"]


def test_frames_without_a_time_axis_have_structure_but_no_diffusion(tmp_path, capsys):
    write_labelled(tmp_path / "rattled.xyz", [(800.0, walk(800.0, frames=30))], md=False)
    out = tmp_path / "plots"
    assert main(["analyze", str(tmp_path / "rattled.xyz"), "--out", str(out),
                 "--angles", "P-O-P:1.9"]) == 0  # fmt: skip
    run = json.loads((out / "analysis.json").read_text())["runs"][f"{tmp_path / 'rattled.xyz'}#0"]
    assert run["angles"]["P-O-P"]["angles_per_frame"] == 1 and "thermostat_temperature_K" not in run
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "rattled.xyz"), "--out", str(tmp_path / "d"),
                 "--diffusion", "Li"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "rattled.xyz: frames not from one MD" in err, err


BAD = {
    "triplet of two": (["--angles", "P-O:1.9"], "argument --angles: 'P-O:1.9': give 3 chemical"),
    "no cutoff": (["--angles", "P-O-P"], "argument --angles: 'P-O-P': give A-B-C:CUTOFF"),
    "cutoff 0": (["--angles", "P-O-P:0"], "cutoffs in (0, 10]"),
    "unknown element": (["--pairs", "Li-Qq"], "argument --pairs: 'Li-Qq': give 2 chemical"),
    "missing species": (["--angles", "Si-O-Si:1.9"], "--angles: run_800K: Si-O-Si: the structure holds no Si"),
    "fit window": (["--diffusion", "Li", "--fit-window", "3,1"], "argument --fit-window: '3,1'"),
    "one block": (["--diffusion", "Li", "--blocks", "1"], "--blocks 1: give at least 2"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_options_are_one_line_naming_the_option(tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "run_800K", 800.0, frames=30)
    extra, message = BAD[case]
    out = tmp_path / "plots"
    capsys.readouterr()
    assert main(["analyze", "run_800K", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not out.exists()
