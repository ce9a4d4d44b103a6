"""Tests of euclidnn.data.label and `euclidnn label`: labels are gradients, runs resume exactly."""

import ctypes
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from euclidnn.cli.__main__ import main
from euclidnn.data.label import Level, Sampling, label, make_labeller, read_complete_frames

pytest.importorskip("tblite")

SHORT = dict(equilibration=10, interval=3, seed=1)
TINY = dict(equilibration=2, interval=1, seed=1)


def finite_difference_forces(labeller, atoms, coordinates, h=1e-3):
    """-dE/dx by central differences (Å) for the given (atom, axis) pairs."""
    forces = []
    for atom, axis in coordinates:
        energies = []
        for sign in (1, -1):
            displaced = atoms.copy()
            displaced.positions[atom, axis] += sign * h
            energies.append(labeller(displaced)[0])
        forces.append(-(energies[0] - energies[1]) / (2 * h))
    return np.array(forces)


def assert_same_frames(a, b):
    """Same geometries and headers; labels equal to SCF convergence (threaded sums may
    differ in the last bits between runs)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x.positions, y.positions) and x.info == y.info
        assert abs(x.get_potential_energy() - y.get_potential_energy()) < 1e-6
        assert np.allclose(x.get_forces(), y.get_forces(), atol=1e-5)


def test_xtb_labels_are_gradients_and_record_settings(tmp_path):
    sampling = Sampling(num_frames=3, **SHORT)
    frames = label("water", tmp_path / "w.xyz", sampling, Level("gfn2-xtb"), progress=False)
    assert len(frames) == 3
    frame = frames[-1]
    assert frame.info["level_of_theory"] == "GFN2-xTB"
    assert frame.info["energy_unit"] == "eV" and frame.info["force_unit"] == "eV/Angstrom"
    assert frame.info["sampling_temperature_K"] == 500.0 and frame.info["sampling_frame"] == 2
    assert frame.info["md_step"] == 10 + 3 * 3
    # the frames are distinct MD snapshots, not copies of the start
    assert not np.allclose(frames[0].positions, frames[1].positions)
    coordinates = [(0, 0), (0, 2), (1, 1), (2, 0)]
    fd = finite_difference_forces(make_labeller(Level("gfn2-xtb")), frame, coordinates)
    forces = frame.get_forces()
    assert np.allclose([forces[a, x] for a, x in coordinates], fd, atol=1e-3)
    # what was written is what was returned
    written, _ = read_complete_frames(tmp_path / "w.xyz")
    assert np.allclose(written[-1].get_potential_energy(), frame.get_potential_energy())
    assert np.allclose(written[-1].get_forces(), forces)


def test_truncated_trailing_frame_is_dropped_and_relabelled(tmp_path):
    out = tmp_path / "w.xyz"
    sampling = Sampling(num_frames=4, **SHORT)
    label("water", out, sampling, Level("gfn2-xtb"), progress=False)
    complete = out.read_bytes()
    (tmp_path / "ref.xyz").write_bytes(complete)
    frames, length = read_complete_frames(out)
    assert len(frames) == 4 and length == len(complete)
    out.write_bytes(complete[: len(complete) - 40])  # a kill in the middle of the last frame
    frames, length = read_complete_frames(out)
    assert len(frames) == 3 and length < len(complete) - 40
    label("water", out, sampling, Level("gfn2-xtb"), progress=False)
    assert_same_frames(read_complete_frames(out)[0], read_complete_frames(tmp_path / "ref.xyz")[0])


def test_broken_middle_frame_names_file_and_frame(tmp_path):
    out = tmp_path / "w.xyz"
    label("water", out, Sampling(num_frames=3, **SHORT), Level("gfn2-xtb"), progress=False)
    lines = out.read_text().splitlines(keepends=True)
    lines[5 + 2] = "O nan-ish garbage\n"  # an atom line of frame 1
    out.write_text("".join(lines))
    with pytest.raises(ValueError, match=r"w\.xyz: frame 1: cannot parse"):
        read_complete_frames(out)


def test_other_settings_on_existing_output_are_refused(tmp_path):
    out = tmp_path / "w.xyz"
    label("water", out, Sampling(num_frames=2, **SHORT), Level("gfn2-xtb"), progress=False)
    other = Sampling(num_frames=2, equilibration=10, interval=3, seed=2)
    with pytest.raises(ValueError, match=r"frame 0: sampling_seed=1 but this run has 2"):
        label("water", out, other, Level("gfn2-xtb"), progress=False)


def test_extending_a_run_keeps_its_frames(tmp_path):
    out = tmp_path / "w.xyz"
    label("water", out, Sampling(num_frames=2, **SHORT), Level("gfn2-xtb"), progress=False)
    first = out.read_bytes()
    label("water", out, Sampling(num_frames=4, **SHORT), Level("gfn2-xtb"), progress=False)
    assert out.read_bytes().startswith(first)
    assert len(read_complete_frames(out)[0]) == 4


def test_unknown_molecule_and_method_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown molecule 'unobtainium'"):
        label("unobtainium", tmp_path / "x.xyz", Sampling(1), Level("gfn2-xtb"))
    pytest.importorskip("pyscf")
    with pytest.raises(ValueError, match="unknown method 'pbe-ish'"):
        Level("pbe-ish", basis="sto-3g").check()
    with pytest.raises(ValueError, match="unknown basis 'def2-nonsense'"):
        Level("pbe", basis="def2-nonsense").check()
    with pytest.raises(ValueError, match="needs a basis"):
        Level("pbe").check()
    code = main(["label", "water", "-o", str(tmp_path / "y.xyz"), "-n", "1", "--method", "xyz"])
    assert code == 2
    assert "euclidnn label: error: unknown method 'xyz'" in capsys.readouterr().err
    assert not (tmp_path / "y.xyz").exists()  # nothing is written before the check


def test_dft_forces_are_gradients(tmp_path):
    pytest.importorskip("pyscf")
    level = Level("pbe", basis="sto-3g")
    frames = label(
        "water", tmp_path / "w.xyz", Sampling(1, **SHORT), level, threads=1, progress=False
    )
    assert frames[0].info["level_of_theory"] == "PBE/sto-3g"
    assert frames[0].info["density_fit"] is True
    coordinates = [(0, 0), (0, 1), (1, 2)]
    fd = finite_difference_forces(make_labeller(level, threads=1), frames[0], coordinates)
    forces = frames[0].get_forces()
    # DFT integration grids break exact translation invariance; a few meV/Å at most
    assert np.allclose([forces[a, x] for a, x in coordinates], fd, atol=5e-3)
    assert np.abs(forces.sum(axis=0)).max() < 5e-3


@pytest.fixture
def torch_threads():
    """PyTorch's thread count set to 3 (not the 1 the labellers ask for), restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(previous)


def test_xtb_threads_hold_in_tblite_and_leave_torch_threads_alone(
    tmp_path, torch_threads, monkeypatch
):
    # tblite and PyTorch share one OpenMP runtime: a thread count left set for tblite would
    # be PyTorch's from then on
    from tblite import _libtblite
    from tblite.ase import TBLite

    runtime = ctypes.CDLL(_libtblite.__file__)  # the OpenMP runtime tblite is linked against
    seen = []
    calculate = TBLite.calculate

    def spy(self, *args, **kwargs):
        seen.append(runtime.omp_get_max_threads())
        return calculate(self, *args, **kwargs)

    monkeypatch.setattr(TBLite, "calculate", spy)
    level = Level("gfn2-xtb")
    label("water", tmp_path / "w.xyz", Sampling(1, **TINY), level, progress=False, xtb_threads=1)
    assert seen and set(seen) == {1}  # every tblite call (MD steps, the label): 1 thread
    assert torch.get_num_threads() == torch_threads


def test_thread_counts_are_restored_when_the_call_fails(torch_threads):
    from euclidnn.data.label.threads import tblite_threads

    with pytest.raises(RuntimeError, match="SCF failed"), tblite_threads(1):
        assert torch.get_num_threads() == 1  # the runtime PyTorch reads is tblite's
        raise RuntimeError("SCF failed")
    assert torch.get_num_threads() == torch_threads


def test_pyscf_threads_leave_torch_threads_alone(tmp_path, torch_threads):
    pytest.importorskip("pyscf")
    level = Level("hf", basis="sto-3g")
    label("water", tmp_path / "w.xyz", Sampling(1, **TINY), level, threads=1, progress=False)
    assert torch.get_num_threads() == torch_threads


def _command(out, frames):
    return [
        sys.executable,
        "-m",
        "euclidnn.cli",
        "label",
        "water",
        "-o",
        str(out),
        "-n",
        str(frames),
        "--method",
        "hf",
        "--basis",
        "sto-3g",
        "--equilibration",
        "10",
        "--interval",
        "3",
        "--seed",
        "1",
        "--threads",
        "1",
        "--quiet",
    ]


@pytest.mark.slow  # ~10 s; the periodic labeller's Ctrl-C test stays in the default suite
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    pytest.importorskip("pyscf")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed.xyz"
    process = subprocess.Popen(_command(killed, 12), env=env, stdout=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        if killed.is_file() and len(read_complete_frames(killed)[0]) >= 2:
            break
        time.sleep(0.02)
    process.kill()
    process.wait()
    interrupted = len(read_complete_frames(killed)[0])
    if interrupted >= 12:
        pytest.skip("the run finished before it could be killed")
    assert interrupted >= 2
    subprocess.run(_command(killed, 12), env=env, check=True, stdout=subprocess.DEVNULL)
    straight = tmp_path / "straight.xyz"
    subprocess.run(_command(straight, 12), env=env, check=True, stdout=subprocess.DEVNULL)
    a, b = read_complete_frames(killed)[0], read_complete_frames(straight)[0]
    assert len(a) == 12
    # the first resumed frame starts its SCF from scratch, not from the last density
    assert_same_frames(a, b)
