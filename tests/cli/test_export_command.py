"""``euclidnn export``: a model file in, a loadable TorchScript export out, one line printed;
an existing output refused without ``--overwrite``; a bad model path one stderr line, exit 2.

The command runs in-process through ``euclidnn.cli.__main__.main``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from ase.build import molecule

from euclidnn import kernels
from euclidnn.cli.__main__ import main
from euclidnn.data import Graph
from euclidnn.export import load_exported
from euclidnn.models import NequIP, NequIPConfig, load_model, predict, save_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny float64 NequIP for H, C, O with random weights."""
    path = tmp_path_factory.mktemp("export-cli") / "model.safetensors"
    torch.manual_seed(0)
    config = NequIPConfig(species=(1, 6, 8), r_max=4.0, num_features=4, num_layers=2)
    save_model(NequIP(config).double(), path)
    return path


def test_export_then_load(model, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["export", str(model), "--out", str(out), "--dtype", "float32"]) == 0
    printed = capsys.readouterr().out.strip()
    kernels_on = os.environ.get("EUCLIDNN_NATIVE", "1") != "0" and kernels.conv.LIBRARY.get()
    ops = "euclidnn::uvu_conv" if kernels_on else "none"
    assert printed == (
        f"{out}: nequip for H+C+O, cutoff 4 Å, receptive field 8 Å (2 hops), float32, "
        f"custom ops: {ops}"
    )
    module, metadata = load_exported(out)
    assert metadata["dtype"] == "float32" and metadata["species"] == [1, 6, 8]
    graph = Graph.from_ase(molecule("CH3CH2OH"), 4.0, torch.float32)
    reference = predict(load_model(model).float(), graph)
    energy = module(graph.positions, graph.numbers, graph.edge_src, graph.edge_dst).sum()
    torch.testing.assert_close(energy.reshape(1), reference.energy, rtol=1e-5, atol=1e-5)


def test_portable(model, tmp_path, capsys):
    out = tmp_path / "plain.pt"
    assert main(["export", str(model), "--out", str(out), "--portable"]) == 0
    assert capsys.readouterr().out.strip().endswith("float64, custom ops: none")
    module, metadata = load_exported(out)
    assert metadata["ops"] == [] and "euclidnn::" not in str(module.inlined_graph)


def test_refuses_to_overwrite(model, tmp_path, capsys):
    out = tmp_path / "model.pt"
    out.write_text("mine\n")
    assert main(["export", str(model), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--overwrite" in err and "Traceback" not in err, err
    assert out.read_text() == "mine\n"
    assert main(["export", str(model), "--out", str(out), "--overwrite"]) == 0
    assert load_exported(out)[1]["dtype"] == "float64"


@pytest.mark.parametrize("bad", ["missing.safetensors", "notes.txt", "."])
def test_bad_model_path_is_one_line(tmp_path, capsys, bad):
    (tmp_path / "notes.txt").write_text("not a model\n")
    out = tmp_path / "model.pt"
    assert main(["export", str(tmp_path / bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("euclidnn export: error:"), err
    assert not out.exists()
