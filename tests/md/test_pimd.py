"""Path-integral MD through i-PI: the quantum kinetic energy of a known case, and nothing left
behind — processes or socket files — on success, error, Ctrl-C or a killed client."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import molecule
from process_checks import processes_in

from euclidnn.md import PIMDConfig, run_pimd
from euclidnn.md.pimd import find_ipi
from euclidnn.md.serve import Address
from euclidnn.models import save_model

HARMONIC_CLIENT = [sys.executable, str(Path(__file__).with_name("harmonic_client.py"))]


def default_socket(run_dir: Path) -> Path:
    import hashlib

    digest = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:12]
    return Path(f"/tmp/ipi_euclidnn_{digest}")


def harmonic_expectation(beta_hbar_omega: float, beads: int) -> float:
    """⟨K_cv⟩ / (½ k_B T) per degree of freedom of a harmonic oscillator discretised with P
    beads: 1 + Σ_{k=1}^{P−1} ω² / Ω_k², Ω_k² = ω² + 4 ω_P² sin²(kπ/P), ω_P = P / (βħ)."""
    ratio = beads / beta_hbar_omega
    return 1 + sum(1 / (1 + 4 * ratio**2 * np.sin(k * np.pi / beads) ** 2) for k in range(1, beads))


@pytest.mark.slow  # ~7 s of PIMD
def test_harmonic_centroid_virial_kinetic_energy(tmp_path):
    """8 H atoms on springs, βħω = 3, 4 beads: K_cv = 1.562 × the classical 3/2 N k_B T
    (the P → ∞ limit is 1.657); a classical run would give 1."""
    temperature, beta_hbar_omega, beads = 100.0, 3.0, 4
    omega_per_fs = beta_hbar_omega * units.kB * temperature * units._e / units._hbar * 1e-15
    spring = 1.008 * (omega_per_fs / units.fs) ** 2  # eV/Å²
    atoms = Atoms("H8", positions=np.random.default_rng(0).random((8, 3)) * 10)
    config = PIMDConfig(beads=beads, temperature=temperature, timestep=2.0, steps=400,
                        relaxation_time=50.0, trajectory_interval=0)  # fmt: skip
    command = [*HARMONIC_CLIENT, "--spring", str(spring)]
    result = run_pimd(None, atoms, config, tmp_path, progress=False, client_command=command)
    ratio = result.kinetic_cv_eV / result.kinetic_classical_eV
    assert ratio == pytest.approx(harmonic_expectation(beta_hbar_omega, beads), abs=0.1)
    assert result.kinetic_cv_error_eV / result.kinetic_classical_eV < 0.05
    assert result.mean_temperature_K == pytest.approx(temperature, rel=0.15)
    assert processes_in(tmp_path) == [] and not default_socket(tmp_path).exists()


def test_model_pimd_leaves_nothing_behind(schnet, tmp_path):
    """A short run of the model on water (4 beads, TCP, two clients): completes, summarises
    i-PI's outputs, and leaves no process or socket."""
    save_model(schnet, tmp_path / "model.safetensors")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = PIMDConfig(beads=4, steps=30, timestep=0.25, clients=2, trajectory_interval=10,
                        address=f"127.0.0.1:{port}")  # fmt: skip
    result = run_pimd(tmp_path / "model.safetensors", molecule("H2O"), config, tmp_path / "run",
                      progress=False)  # fmt: skip
    assert result.steps == 30 and result.beads == 4
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["kinetic_classical_eV"] == pytest.approx(1.5 * 3 * units.kB * 300.0)
    assert np.isfinite(summary["kinetic_cv_eV"]) and summary["ns_per_day"] > 0
    assert len(list((tmp_path / "run").glob("simulation.pos_*.xyz"))) == 4
    for k in range(2):  # both clients served beads
        assert "force evaluations" in (tmp_path / "run" / f"client_{k}.log").read_text()
    assert processes_in(tmp_path / "run") == []


def test_euclidnn_serve_is_a_force_client_too(schnet, tmp_path):
    """md starts its own clients (``python -m euclidnn.md.client``); the CLI's ``euclidnn
    serve``, for clients on other machines, serves the same way."""
    save_model(schnet, tmp_path / "model.safetensors")
    command = [sys.executable, "-m", "euclidnn.cli", "serve", str(tmp_path / "model.safetensors")]
    config = PIMDConfig(beads=2, steps=10, timestep=0.25, trajectory_interval=0)
    result = run_pimd(None, molecule("H2O"), config, tmp_path / "run", progress=False,
                      client_command=command)  # fmt: skip
    assert result.steps == 10
    log = (tmp_path / "run" / "client_0.log").read_text()
    calls = re.search(r"euclidnn serve: (\d+) force evaluations", log)
    assert calls and int(calls[1]) >= 20, log  # 2 beads × (1 + 10 steps)
    assert processes_in(tmp_path / "run") == []


def test_a_killed_client_stops_the_run_and_everything_is_cleaned_up(tmp_path):
    config = PIMDConfig(beads=2, steps=100000, timestep=1.0, trajectory_interval=0)
    command = [*HARMONIC_CLIENT, "--die-after", "40"]
    with pytest.raises(
        ChildProcessError, match=r"force client 0 exited with code -9.*client_0.log"
    ):
        run_pimd(None, molecule("H2O"), config, tmp_path, progress=False, client_command=command)
    assert processes_in(tmp_path) == [] and not default_socket(tmp_path).exists()


def test_an_error_starting_clients_stops_i_pi(tmp_path):
    config = PIMDConfig(beads=2, steps=10)
    with pytest.raises(FileNotFoundError):
        run_pimd(None, molecule("H2O"), config, tmp_path, progress=False,
                 client_command=[str(tmp_path / "no-such-client")])  # fmt: skip
    assert processes_in(tmp_path) == [] and not default_socket(tmp_path).exists()


def start_pimd(model_path: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    """``euclidnn md … --ensemble pimd`` (2 beads, one client, many steps), returned once
    i-PI logs and both processes run."""
    command = [sys.executable, "-m", "euclidnn.cli", "md", str(model_path), "H2O", "--ensemble",
               "pimd", "--beads", "2", "--steps", "100000", "--out", str(run_dir), "--quiet",
               *extra]  # fmt: skip
    parent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not (run_dir / "simulation.out").exists() or len(processes_in(run_dir)) < 2:
        assert parent.poll() is None and time.monotonic() < deadline, parent.stdout.read()
        time.sleep(0.1)
    return parent


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_of_euclidnn_md_cleans_up(schnet, tmp_path, sig):
    save_model(schnet, tmp_path / "model.safetensors")
    run_dir = tmp_path / "run"
    parent = start_pimd(tmp_path / "model.safetensors", run_dir)
    parent.send_signal(sig)
    parent.wait(timeout=30)
    assert parent.returncode != 0
    assert processes_in(run_dir) == [] and not default_socket(run_dir).exists()


def test_ctrl_c_pressed_again_during_the_cleanup_leaves_nothing_behind(schnet, tmp_path):
    """Ctrl-C three times in quick succession: the first stops the run, the others arrive
    while i-PI and the client are being stopped and must not cut that short."""
    save_model(schnet, tmp_path / "model.safetensors")
    run_dir = tmp_path / "run"
    parent = start_pimd(tmp_path / "model.safetensors", run_dir)
    for pause in (0.0, 0.05, 0.3):
        time.sleep(pause)
        parent.send_signal(signal.SIGINT)
    parent.wait(timeout=60)
    output = parent.stdout.read()
    assert parent.returncode != 0
    assert processes_in(run_dir) == [] and not default_socket(run_dir).exists()
    assert "interrupted at step" in output and "no summary.json" in output, output
    assert not (run_dir / "summary.json").exists()


@pytest.mark.slow  # ~14 s: two client timeouts
def test_no_local_clients_says_how_to_connect_them_and_gives_up(schnet, tmp_path):
    """``--no-local-clients``: md prints i-PI's address and the `euclidnn serve` command,
    and stops after --client-timeout when no client came; the folder of that run, which did
    no step, does not stand in the way of the next try."""
    save_model(schnet, tmp_path / "model.safetensors")
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "euclidnn", "md", str(tmp_path / "model.safetensors"),
               "H2O", "--ensemble", "pimd", "--beads", "2", "--steps", "10", "--out",
               str(run_dir), "--quiet", "--no-local-clients", "--client-timeout", "2"]  # fmt: skip
    for _ in range(2):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        text = result.stdout + result.stderr
        assert result.returncode != 0
        serve = f"euclidnn serve {(tmp_path / 'model.safetensors').resolve()} "
        serve += (
            f"{(run_dir / 'structure.xyz').resolve()} --address {default_socket(run_dir).name[4:]}"
        )
        assert serve in result.stdout, text
        assert "no force client served i-PI" in text and "within 2 s (--client-timeout)" in text
        assert processes_in(run_dir) == [] and not default_socket(run_dir).exists()


def test_stale_and_busy_sockets_and_ports_are_reported(tmp_path):
    name = f"euclidnn_test_{os.getpid()}"
    path = Address(name=name).path
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nothing listens: as after a crash
    config = PIMDConfig(beads=2, steps=10, address=name)
    try:
        with pytest.raises(ValueError, match=f"{path}: stale socket.*rm {path}"):
            run_pimd(None, molecule("H2O"), config, tmp_path, client_command=["true"])
        assert path.exists()  # reported, not removed behind the user's back
        path.unlink()
        with socket.socket(socket.AF_UNIX) as busy:
            busy.bind(str(path))
            busy.listen()
            with pytest.raises(ValueError, match="in use by a running i-PI server"):
                run_pimd(None, molecule("H2O"), config, tmp_path, client_command=["true"])
    finally:
        path.unlink(missing_ok=True)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = PIMDConfig(beads=2, steps=10, address=f"127.0.0.1:{port}")
        with pytest.raises(ValueError, match=f"port {port} is in use"):
            run_pimd(None, molecule("H2O"), config, tmp_path, client_command=["true"])
    assert processes_in(tmp_path) == []


def test_missing_i_pi_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"pip install 'ipi>=3'"):
        find_ipi()
