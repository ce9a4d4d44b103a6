"""Bad input to `euclidnn train`, `evaluate` and `learning-curve`, as a careful new user and a
security reviewer would try it: each ends with exit status 2 and one line on stderr,
``euclidnn <command>: error: …`` naming the file, frame, option or field and what would be
valid, without a traceback, and leaves nothing behind; Ctrl-C ends with one line and 130.

The commands run as ``python -m euclidnn`` in a subprocess (this checkout first on
PYTHONPATH), so what is checked is what a user sees: the exit status and the whole stderr.
The data are a few ethanol frames of the shipped set written to a file, and the training runs
one epoch of a tiny SchNet.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import ase.build
import ase.io
import numpy as np
import pytest
from ase import units
from marks import slow_beyond
from safetensors.torch import save_file

from euclidnn.cli.__main__ import main
from euclidnn.data import read
from euclidnn.data.datasets import DATASETS
from euclidnn.data.sanity import label_scale_warnings
from euclidnn.models import build_model, load_model
from euclidnn.train import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY = "model: {name: schnet, settings: {num_features: 8, num_interactions: 1, num_basis: 8}}\n"
KCAL_MOL = units.kcal / units.mol
HARTREE_BOHR = units.Hartree / units.Bohr


def euclidnn(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m euclidnn ARGS`` in ``cwd``, importing this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("EUCLIDNN_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "euclidnn", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def user_error(result: subprocess.CompletedProcess, command: str, *parts: str) -> str:
    """The one stderr line of a user error of ``command``, checked: exit 2, no traceback,
    each of ``parts`` in it."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"euclidnn {command}: error: "), lines[0]
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (temporary files included), sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A folder with eth.xyz (30 ethanol frames, eV and Å, unit headers as `euclidnn label`
    writes them), kcal.xyz (the same in kcal/mol and kcal/mol/Å, headers saying eV),
    nh3.xyz (one labelled frame with nitrogen), tiny.yaml and model.safetensors (a tiny SchNet
    trained one epoch on eth.xyz)."""
    folder = tmp_path_factory.mktemp("data")
    with gzip.open(DATASETS["ethanol"].path, "rt") as f:
        frames = ase.io.read(f, index=":30", format="extxyz")
    ase.io.write(folder / "eth.xyz", frames)
    for atoms in frames:
        atoms.calc.results["energy"] /= KCAL_MOL
        atoms.calc.results["forces"] /= KCAL_MOL
    ase.io.write(folder / "kcal.xyz", frames)
    nh3 = ase.build.molecule("NH3")
    nh3.info["energy"] = -100.0
    nh3.arrays["forces"] = np.zeros((4, 3))
    ase.io.write(folder / "nh3.xyz", nh3, format="extxyz")
    (folder / "tiny.yaml").write_text(TINY + "run: {max_epochs: 1}\n")
    run = folder / "run"
    argv = ["train", str(folder / "eth.xyz"), "--config", str(folder / "tiny.yaml")]
    assert main([*argv, "--out", str(run), "--quiet"]) == 0
    (folder / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes())
    return folder


# --- the one error path ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "evaluate", "learning-curve"])
def test_a_misused_command_line_is_one_line(command, tmp_path):
    extra = ["model.safetensors"] if command == "evaluate" else []
    result = euclidnn(command, *extra, "eth.xyz", "--no-such-option", cwd=tmp_path)
    user_error(result, command, "unrecognized arguments: --no-such-option", "--help")
    result = euclidnn(command, cwd=tmp_path)
    user_error(result, command, "the following arguments are required")


def failing(error: BaseException):
    def run(args):
        raise error

    return run


@pytest.mark.parametrize(
    "error, status, line",
    [
        (ValueError("x.xyz: frame 3: energy: NaN"), 2, "error: x.xyz: frame 3: energy: NaN"),
        (FileNotFoundError(2, "No such file or directory", "a.xyz"), 2, "error: a.xyz: No such"),
        (IsADirectoryError("--config d: is a folder"), 2, "error: --config d: is a folder"),
        (PermissionError(13, "Permission denied", "out"), 2, "error: out: Permission denied"),
        (ValueError("first line\n  second line"), 2, "error: first line second line"),
        (MemoryError(), 2, "error: out of memory; use smaller inputs"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (KeyboardInterrupt("interrupted at epoch 2; resume with: …"), 130, "resume with: …"),
        (
            RuntimeError(
                "operation failed in the TorchScript interpreter.\n…\nRuntimeError: "
                "KeyboardInterrupt: <EMPTY MESSAGE>"
            ),
            130,
            "interrupted",
        ),
        (IndexError("list index out of range"), 1, "internal error (IndexError"),
        (TypeError("unsupported operand"), 1, "internal error (TypeError"),
    ],
)
def test_errors_map_to_one_line_and_a_status(error, status, line, monkeypatch, capsys):
    """User errors 2, Ctrl-C 130, anything else a bug (1) that says how to report it."""
    import euclidnn.cli.train

    monkeypatch.setattr(euclidnn.cli.train, "run", failing(error))
    monkeypatch.delenv("EUCLIDNN_DEBUG", raising=False)
    assert main(["train", "x.xyz"]) == status
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("euclidnn train: ") and line in err, err
    if status == 1:
        assert "bug" in err and "--debug" in err


def test_debug_shows_the_traceback(monkeypatch, capsys):
    import euclidnn.cli.train

    monkeypatch.setattr(euclidnn.cli.train, "run", failing(ValueError("bad frame")))
    monkeypatch.delenv("EUCLIDNN_DEBUG", raising=False)
    assert main(["--debug", "train", "x.xyz"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "euclidnn train: error: bad frame"
    monkeypatch.setenv("EUCLIDNN_DEBUG", "1")
    assert main(["train", "x.xyz"]) == 2
    assert "Traceback" in capsys.readouterr().err


# --- validation at the boundary -------------------------------------------------------------


@pytest.mark.parametrize(
    "command, option, value, expected",
    slow_beyond(
        [
            ("train", "--energy-unit", "Bohr", "it is a length); e.g. eV, meV, kcal/mol"),
            ("evaluate", "--length-unit", "eV", "it is an energy); e.g. Å, Bohr"),
            ("learning-curve", "--forces-unit", "1", "it is dimensionless); e.g. eV/Å"),
            ("train", "--stress-unit", "eV/Å", "it is a force); e.g. eV/Å^3"),
            ("evaluate", "--energy-unit", "kcl/mol", "unknown unit 'kcl'"),
        ],
        3,
    ),
)
def test_units_are_checked_by_dimension(command, option, value, expected, data, tmp_path):
    extra = [str(data / "model.safetensors")] if command == "evaluate" else []
    result = euclidnn(command, *extra, str(data / "eth.xyz"), option, value, cwd=tmp_path)
    user_error(result, command, f"{option} {value!r}", expected)
    assert listing(tmp_path) == []


@pytest.mark.slow  # ~11 s of commands
def test_config_units_and_model_settings_are_checked_at_load(tmp_path):
    """--print-config refuses what the run would: a unit of the wrong dimension, a model
    setting of the wrong type or range, naming the file and the key."""
    for text, expected in (
        ("data: {energy_unit: Bohr}", "data.energy_unit: 'Bohr' is not a unit of energy"),
        ("model: {settings: {num_features: '32'}}", "num_features: expected an integer"),
        ("model: {name: schnet, settings: {gamma: fast}}", "gamma: expected a number or null"),
        ("model: {settings: {lmax: 9}}", "model.settings: NequIPConfig.lmax must be 0..3"),
    ):
        (tmp_path / "c.yaml").write_text(text)
        result = euclidnn("train", "eth.xyz", "--config", "c.yaml", "--print-config", cwd=tmp_path)
        user_error(result, "train", "c.yaml: ", expected)


@pytest.mark.parametrize("command", ["train", "learning-curve"])
def test_a_config_that_is_a_folder(command, tmp_path):
    (tmp_path / "configs").mkdir()
    result = euclidnn(command, "ethanol", "--config", "configs", cwd=tmp_path)
    user_error(result, command, "--config configs: is a folder; give a YAML file")


@pytest.mark.parametrize("command", slow_beyond(["train", "evaluate", "learning-curve"], 1))
def test_a_label_key_not_in_the_file(command, data, tmp_path):
    extra = [str(data / "model.safetensors")] if command == "evaluate" else []
    result = euclidnn(command, *extra, str(data / "eth.xyz"), "--forces-key", "F", cwd=tmp_path)
    user_error(result, command, "eth.xyz: forces_key 'F': no frame has this label", "forces")
    assert listing(tmp_path) == []  # no run folder, no learning-curve folder


def test_extxyz_unit_headers_are_honoured(tmp_path):
    """The headers `euclidnn label` writes are the file's units (``--help`` says so); an
    option overrides them; frames that disagree, or a unit of the wrong dimension, are errors
    naming the frame or the field."""
    atoms = ase.build.molecule("H2O")
    atoms.info.update(energy=-76.0, energy_unit="Hartree", length_unit="Angstrom")
    atoms.arrays["forces"] = np.full((3, 3), 0.01)
    atoms.info["force_unit"] = "Hartree/Bohr"
    ase.io.write(tmp_path / "w.xyz", atoms, format="extxyz")
    (s,) = read(tmp_path / "w.xyz")
    assert s.energy == pytest.approx(-76.0 * units.Hartree)
    assert s.forces[0, 0] == pytest.approx(0.01 * HARTREE_BOHR)
    (s,) = read(tmp_path / "w.xyz", energy_unit="eV", forces_unit="eV/Å")
    assert s.energy == pytest.approx(-76.0) and s.forces[0, 0] == pytest.approx(0.01)

    other = atoms.copy()
    other.info["energy_unit"] = "eV"
    ase.io.write(tmp_path / "mixed.xyz", [atoms, other], format="extxyz")
    with pytest.raises(ValueError, match=r"frame 1: energy_unit='eV', but frame 0 declares"):
        read(tmp_path / "mixed.xyz")
    atoms.info["force_unit"] = "Hartree"
    ase.io.write(tmp_path / "bad.xyz", atoms, format="extxyz")
    with pytest.raises(ValueError, match=r"forces_unit: 'Hartree' is not a unit of force"):
        read(tmp_path / "bad.xyz")


@pytest.mark.parametrize("size", slow_beyond(["-1", "0", "eight"], 1))
def test_evaluate_refuses_a_batch_size_below_one(size, data, tmp_path):
    model = str(data / "model.safetensors")
    result = euclidnn("evaluate", model, str(data / "eth.xyz"), "--batch-size", size, cwd=tmp_path)
    user_error(result, "evaluate", "argument --batch-size: expected an integer ≥ 1")


@pytest.mark.parametrize("command", slow_beyond(["train", "evaluate", "learning-curve"], 1))
def test_an_index_out_of_range_names_the_frame_count(command, data, tmp_path):
    extra = [str(data / "model.safetensors")] if command == "evaluate" else []
    result = euclidnn(command, *extra, str(data / "eth.xyz"), "--index", "30", cwd=tmp_path)
    user_error(result, command, "--index '30': no frame 30; the file has 30 frames (0…29")
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "command, option, kind",
    slow_beyond(
        [
            ("train", "--out", "file"),
            ("learning-curve", "--out", "file"),
            ("evaluate", "--plots", "file"),
            ("evaluate", "--json", "folder"),
        ],
        2,
    ),
)
def test_an_output_path_of_the_wrong_kind(command, option, kind, data, tmp_path):
    target = tmp_path / "target"
    if kind == "folder":
        target.mkdir()
    else:
        target.write_text("keep me")
    extra = [str(data / "model.safetensors")] if command == "evaluate" else []
    result = euclidnn(command, *extra, str(data / "eth.xyz"), option, "target", cwd=tmp_path)
    user_error(result, command, f"{option} target: is a {kind}")
    assert listing(tmp_path) == ["target"]  # nothing written, no target.tmp
    assert kind == "folder" or target.read_text() == "keep me"


# --- labels in another unit -----------------------------------------------------------------


def test_train_refuses_forces_in_kcal_per_mol_read_as_ev(data, tmp_path):
    """RMS 24 eV/Å: kcal/mol/Å read as eV/Å. Refused before any file is written."""
    result = euclidnn("train", str(data / "kcal.xyz"), "--out", "run", cwd=tmp_path)
    user_error(
        result, "train", "kcal.xyz: RMS force component", "as kcal/mol/Å it would be 1.0",
        "--forces-unit kcal/mol/Å", "data.max_force_rms = 10 eV/Å",
    )  # fmt: skip
    assert listing(tmp_path) == []


def test_evaluate_warns_of_forces_in_another_unit(data, tmp_path):
    result = euclidnn(
        "evaluate", str(data / "model.safetensors"), str(data / "kcal.xyz"), "--index", ":8",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("euclidnn evaluate: warning: ") and "kcal/mol/Å" in line


def test_a_force_limit_can_be_raised_in_the_config(data, tmp_path):
    (tmp_path / "c.yaml").write_text(TINY + "run: {max_epochs: 1}\ndata: {max_force_rms: null}\n")
    args = ["--config", "c.yaml", "--out", "run", "--index", ":12", "--quiet"]
    result = euclidnn("train", str(data / "kcal.xyz"), *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.splitlines()
    assert "warning" in line and "--forces-unit kcal/mol/Å" in line
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_label_scale_warnings_name_the_likely_unit():
    """Hartree/Bohr read as eV/Å (too small), and forces per Bohr read per Å against energies
    (consecutive frames disagree by 1.89); the shipped data raise nothing."""
    structures = read(DATASETS["ethanol"].path, ":100")
    assert label_scale_warnings(structures) == []
    small = [dataclasses.replace(s, forces=s.forces / HARTREE_BOHR) for s in structures]
    assert any("as Hartree/Bohr it would be" in m for m in label_scale_warnings(small))
    per_bohr = [dataclasses.replace(s, forces=s.forces * units.Bohr) for s in structures]
    (message,) = label_scale_warnings(per_bohr)
    assert "forces per Bohr read per Å" in message and "--forces-unit" in message
    big = [dataclasses.replace(s, forces=s.forces / KCAL_MOL) for s in structures]
    with pytest.raises(ValueError, match="as kcal/mol/Å it would be"):
        label_scale_warnings(big, max_force_rms=10.0)


# --- nothing overwritten, nothing half-written ----------------------------------------------


def test_learning_curve_refuses_a_non_empty_out_without_overwrite(data, tmp_path):
    (tmp_path / "curve").mkdir()
    (tmp_path / "curve" / "notes.txt").write_text("mine")
    result = euclidnn("learning-curve", str(data / "eth.xyz"), "--out", "curve", cwd=tmp_path)
    user_error(result, "learning-curve", "--out curve: folder is not empty; use --overwrite")
    assert listing(tmp_path) == ["curve", "curve/notes.txt"]


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_train_leaves_the_folder_as_it_found_it(existing, data, tmp_path):
    """The validation set holds nitrogen, which the model trained on ethanol lacks: fit
    refuses it after config.yaml and split.json are written; they are removed, so the same
    command can run again without --overwrite."""
    if existing:
        (tmp_path / "run").mkdir()
    args = [str(data / "eth.xyz"), "--valid", str(data / "nh3.xyz"), "--config"]
    result = euclidnn("train", *args, str(data / "tiny.yaml"), "--out", "run", cwd=tmp_path)
    user_error(result, "train", "nh3.xyz frame 0: elements [7] are not among the model's")
    assert listing(tmp_path) == (["run"] if existing else [])


def test_a_failed_learning_curve_removes_what_it_wrote(data, tmp_path):
    result = euclidnn(
        "learning-curve", str(data / "eth.xyz"), "--sizes", "20,40", "--out", "curve",
        cwd=tmp_path,
    )  # fmt: skip
    user_error(result, "learning-curve", "30 structures", "--sizes (40)", "need 640")
    assert listing(tmp_path) == []


def test_evaluate_writes_whole_files_only(data, tmp_path):
    result = euclidnn(
        "evaluate", str(data / "model.safetensors"), str(data / "eth.xyz"), "--index", ":6",
        "--json", "out/m.json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert listing(tmp_path) == ["out", "out/m.json"]
    assert json.loads((tmp_path / "out" / "m.json").read_text())["n_structures"] == 6


# --- untrusted model files ------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, field",
    [
        ({"species": [1, 8], "num_features": 10**8}, "num_features=100000000"),
        ({"species": [1, 8], "num_features": 1, "num_interactions": 10**7}, "num_interactions"),
    ],
)
def test_a_tiny_model_file_cannot_ask_for_terabytes(config, field, tmp_path):
    """A few hundred bytes whose config asks for 10⁸ features (4·10¹⁶ numbers) or 10⁷ layers:
    refused before the allocation, naming the file and the field."""
    metadata = {"format": "euclidnn.model", "version": "2", "model": "SchNet"}
    save_file(
        {}, tmp_path / "evil.safetensors", metadata={**metadata, "config": json.dumps(config)}
    )
    assert (tmp_path / "evil.safetensors").stat().st_size < 500
    with pytest.raises(ValueError, match=rf"evil.safetensors: the SchNetConfig asks for .*{field}"):
        load_model(tmp_path / "evil.safetensors")
    result = euclidnn("evaluate", "evil.safetensors", "ethanol", "--index", ":2", cwd=tmp_path)
    user_error(result, "evaluate", "evil.safetensors: the SchNetConfig asks for more than", field)


def test_build_model_refuses_more_than_the_limit_for_any_model():
    with pytest.raises(ValueError, match=r"more than 1,000,000,000 numbers .*MAX_MODEL_ELEMENTS"):
        build_model("NequIP", {"species": [1], "num_features": 10**5}, where="model.settings")


# --- Ctrl-C ---------------------------------------------------------------------------------


def start(*args: str, cwd: Path) -> subprocess.Popen:
    """``python -m euclidnn ARGS`` started in ``cwd``, its stdout a pipe read line by line."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "euclidnn", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def interrupt_after(process: subprocess.Popen, pattern: str) -> tuple[int, str]:
    """Send SIGINT once a stdout line matches ``pattern``; (exit status, stderr)."""
    for line in process.stdout:
        if re.match(pattern, line):
            process.send_signal(signal.SIGINT)
            break
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def test_ctrl_c_in_train_checkpoints_and_says_how_to_resume(data, tmp_path):
    args = ["train", str(data / "eth.xyz"), "--config", str(data / "tiny.yaml")]
    process = start(*args, "--max-epochs", "1000", "--out", "run", cwd=tmp_path)
    status, err = interrupt_after(process, r"epoch +1 ")
    assert status == 130 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    match = re.fullmatch(
        r"euclidnn train: interrupted (?:at epoch \d+, batch \d+ of \d+|after epoch \d+); "
        r"resume with: (.*)\n",
        err,
    )
    assert match, err
    checkpoint = load_checkpoint(tmp_path / "run" / "last.ckpt")
    assert checkpoint.state.epoch >= 1 and checkpoint.state.step >= 1
    resume = shlex.split(match.group(1))
    assert resume[:2] == ["euclidnn", "train"] and resume[-1] == "--resume"
    epochs = str(checkpoint.state.epoch + 1)
    result = euclidnn(*resume[1:], "--max-epochs", epochs, "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"resumed from run/last.ckpt: epoch {checkpoint.state.epoch}" in result.stdout


def test_ctrl_c_in_learning_curve_is_one_line_and_removes_its_folder(data, tmp_path):
    args = ["--sizes", "20", "--n-valid", "2", "--n-test", "8", "--max-epochs", "1000"]
    config = ["--config", str(data / "tiny.yaml"), "--models", "schnet", "--quiet"]
    process = start("learning-curve", str(data / "eth.xyz"), *args, *config, "--out", "c", cwd=tmp_path)  # fmt: skip
    status, err = interrupt_after(process, r".*eth.xyz: 30 structures")
    assert status == 130, err
    assert err == "euclidnn learning-curve: interrupted; what it wrote to c is removed\n"
    assert listing(tmp_path) == []


def test_ctrl_c_in_evaluate_is_one_line(data, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # the module, not the function ``euclidnn.train.metrics`` that its package exports
    monkeypatch.setattr(importlib.import_module("euclidnn.train.metrics"), "compare", interrupted)
    model, xyz = str(data / "model.safetensors"), str(data / "eth.xyz")
    plots = ["--plots", str(tmp_path / "report"), "--json", str(tmp_path / "m.json")]
    assert main(["evaluate", model, xyz, "--index", ":4", *plots]) == 130
    assert capsys.readouterr().err == "euclidnn evaluate: interrupted\n"
    assert listing(tmp_path) == []
