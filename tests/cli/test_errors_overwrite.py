"""Nothing a command wrote earlier is replaced without ``--overwrite`` (SPEC §8, issue 19):
``evaluate``, ``analyze``, ``interpret`` and ``symmetry`` run once, then again into the same
outputs — refused before any work with one stderr line (exit 2) that names ``--overwrite``,
their files untouched — and again with ``--overwrite``, which replaces them.

The commands run in-process through ``euclidnn.cli.__main__.main``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from euclidnn.cli.__main__ import main
from euclidnn.models import SchNet, SchNetConfig, save_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny SchNet for H, C, O with random weights."""
    path = tmp_path_factory.mktemp("overwrite") / "model.safetensors"
    torch.manual_seed(0)
    config = SchNetConfig(species=(1, 6, 8), r_max=4.0, num_features=8, num_interactions=1)
    save_model(SchNet(config).double(), path)
    return path


def snapshot(paths: list[Path]) -> dict[Path, tuple[bytes, int]]:
    """Each file's contents and modification time (ns)."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


def check_overwrite(args: list[str], outputs: list[Path], capsys) -> None:
    """Run ``args`` (it writes ``outputs``), again (refused, nothing touched), and again with
    ``--overwrite`` (accepted)."""
    assert main(args) == 0, capsys.readouterr().err
    assert all(p.is_file() for p in outputs), outputs
    before = snapshot(outputs)
    capsys.readouterr()
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and "--overwrite" in err, err
    assert "already exist" in err and "Traceback" not in err, err
    assert snapshot(outputs) == before
    assert main([*args, "--overwrite"]) == 0, capsys.readouterr().err


@pytest.mark.slow  # ~7 s of plots
def test_evaluate_json_and_plots(model, tmp_path, capsys):
    json_file, plots = tmp_path / "metrics.json", tmp_path / "report"
    args = ["evaluate", str(model), "ethanol", "--index", ":4"]
    outputs = [json_file, plots / "metrics.txt", plots / "parity.png"]
    check_overwrite([*args, "--json", str(json_file), "--plots", str(plots)], outputs, capsys)
    # each output on its own: an existing --json alone, and a report alone, are refused
    assert main([*args, "--json", str(json_file)]) == 2
    assert "--json" in capsys.readouterr().err
    assert main([*args, "--plots", str(plots)]) == 2
    assert "--plots" in capsys.readouterr().err
    # a folder holding other files only is fine
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine\n")
    assert main([*args, "--plots", str(tmp_path / "other")]) == 0
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine\n"


def test_analyze_out(model, tmp_path, capsys):
    out = tmp_path / "analysis"
    args = ["analyze", "--model", str(model), "--structure", "H2O", "--reference", "none"]
    args += ["--no-optimize", "--out", str(out)]
    outputs = [out / "analysis.json", out / "normal_modes.csv", out / "normal_modes.png"]
    check_overwrite(args, outputs, capsys)


def test_interpret_out(model, tmp_path, capsys):
    out = tmp_path / "interpret"
    embeddings = ["interpret", "embeddings", str(model), "--out", str(out)]
    check_overwrite(embeddings, [out / f"embeddings_pca.{s}" for s in ("png", "csv", "json")], capsys)  # fmt: skip
    potential = ["interpret", "potential", str(model), "H2O", "--probe", "H", "--resolution", "2"]
    stem = out / "potential-H2O-H"
    outputs = [stem.with_suffix(f".{s}") for s in ("png", "csv", "json")]
    # the embeddings' files do not stop a potential map in the same folder, nor one of
    # another molecule
    check_overwrite([*potential, "--out", str(out)], outputs, capsys)
    potential[3] = "CH4"
    assert main([*potential, "--out", str(out)]) == 0, capsys.readouterr().err


def test_symmetry_symmetrize_and_plot_signal(tmp_path, capsys):
    structure, png = tmp_path / "clean.xyz", tmp_path / "signal.png"
    args = ["symmetry", "CH4", "--symmetrize", str(structure)]
    args += ["--plot-signal", str(png), "--lmax", "2"]
    check_overwrite(args, [structure, png], capsys)
    assert main(["symmetry", "CH4", "--plot-signal", str(png)]) == 2
    assert "--plot-signal" in capsys.readouterr().err
