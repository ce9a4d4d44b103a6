"""Path-integral MD through i-PI: i-PI propagates the ring polymer (PILE-L thermostat), K
force clients (:mod:`euclidnn.md.client`: :func:`~euclidnn.md.serve.serve_model`, processes
of their own) evaluate the beads.

The run folder holds ``input.xml``, ``init.xyz`` (i-PI's input), ``structure.xyz``, i-PI's
outputs (``simulation.out``: step, time, conserved energy, temperature, centroid-virial
kinetic energy, potential; bead and centroid trajectories), the logs of i-PI and of each
client, and ``summary.json`` (only for a finished run). The server and every client run in
their own process group and are stopped, and a UNIX socket file removed, on every way out:
success, error, Ctrl-C (KeyboardInterrupt, also when pressed again during the cleanup),
SIGTERM, or a client that dies (:class:`~euclidnn.md.processes.Processes`).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from tqdm import tqdm

from euclidnn.md.processes import Child, Processes
from euclidnn.md.run import ns_per_day, write_summary
from euclidnn.md.serve import Address, check_address_free

__all__ = [
    "PIMDConfig",
    "PIMDResult",
    "run_pimd",
    "run_address",
    "last_step",
    "find_ipi",
    "block_average",
    "ipi_input",
]

CLIENTS_GONE_GRACE = 20.0  # s i-PI may take to exit after its clients did
MOLECULE_BOX = 100.0  # Å: the cell i-PI is given for a molecule (never used: pbc='false')


@dataclass(frozen=True)
class PIMDConfig:
    """What to run.

    Attributes:
        beads: replicas P of the ring polymer.
        temperature: K.
        timestep: fs.
        steps: MD steps.
        relaxation_time: τ of the PILE-L centroid thermostat, fs (internal modes are damped
            at ``pile_lambda`` × critical).
        pile_lambda: damping of the internal modes relative to critical (i-PI's default 1).
        log_interval: steps between lines of ``simulation.out``.
        trajectory_interval: steps between bead and centroid frames (0: none).
        seed: i-PI's random seed.
        clients: force clients started here (0: connect them yourself, ``euclidnn serve``).
        address: ``HOST:PORT`` (TCP) or a UNIX socket name; default a name derived from the
            run folder, so a rerun after a crash finds (and reports) the stale socket.
        fix_com: remove the centre-of-mass motion of the centroid (i-PI's ``fixcom``).
        equilibration_fraction: leading fraction of the log left out of the averages.
        connect_timeout: s to wait for i-PI to listen.
        client_timeout: s to wait for the first force evaluation, that is for a client to
            connect and serve: with ``clients=0`` the time you have to start ``euclidnn serve``
            (10 minutes by default); after it the run stops with ``TimeoutError``.
    """

    beads: int = 8
    temperature: float = 300.0
    timestep: float = 0.5
    steps: int = 1000
    relaxation_time: float = 100.0
    pile_lambda: float = 1.0
    log_interval: int = 1
    trajectory_interval: int = 10
    seed: int = 0
    clients: int = 1
    address: str | None = None
    fix_com: bool = True
    equilibration_fraction: float = 0.2
    connect_timeout: float = 60.0
    client_timeout: float = 600.0

    def __post_init__(self) -> None:
        positive = ("temperature", "timestep", "relaxation_time", "pile_lambda")
        for name in (*positive, "connect_timeout", "client_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a positive number, got {value!r}")
        if self.beads < 1 or self.steps < 1 or self.log_interval < 1 or self.clients < 0:
            raise ValueError(
                f"beads ({self.beads}), steps ({self.steps}), log_interval "
                f"({self.log_interval}) must be ≥ 1 and clients ({self.clients}) ≥ 0"
            )
        if not 0 <= self.equilibration_fraction < 1:
            raise ValueError(f"equilibration_fraction: must be in [0, 1), got {self}")
        if self.address is not None:
            Address.parse(self.address)


@dataclass(frozen=True)
class PIMDResult:
    """What a PIMD run did (also in ``summary.json``); energies in eV.

    Attributes:
        kinetic_cv_eV, kinetic_cv_error_eV: centroid-virial kinetic energy, mean and standard
            error (block averages), over the steps after equilibration.
        kinetic_classical_eV: 3/2 N k_B T.
    """

    steps: int
    beads: int
    num_atoms: int
    timestep_fs: float
    ns_per_day: float
    mean_temperature_K: float
    kinetic_cv_eV: float
    kinetic_cv_error_eV: float
    kinetic_classical_eV: float
    wall_seconds: float


def find_ipi() -> str:
    """The ``i-pi`` executable: next to this Python's, else on ``PATH``."""
    beside = Path(sys.executable).parent / "i-pi"
    if beside.is_file():
        return str(beside)
    found = shutil.which("i-pi")
    if found is None:
        raise FileNotFoundError(
            "i-PI is not installed (no `i-pi` next to this Python nor on PATH); install it with "
            "`pip install 'ipi>=3'` or `pip install 'euclidnn[md]'`"
        )
    return found


def block_average(values: np.ndarray, blocks: int = 10) -> tuple[float, float]:
    """Mean and its standard error from ``blocks`` contiguous block means (for correlated
    samples): σ = std(block means) / √(blocks − 1).

    >>> block_average(np.array([1.0, 3.0] * 50), blocks=5)
    (2.0, 0.0)
    """
    values = np.asarray(values, dtype=float)
    blocks = max(1, min(blocks, len(values)))
    means = np.array([b.mean() for b in np.array_split(values, blocks)])
    error = float(means.std() / math.sqrt(blocks - 1)) if blocks > 1 else float("nan")
    return float(values.mean()), error


def ipi_input(atoms: Atoms, config: PIMDConfig, address: Address) -> str:
    """i-PI's XML input: NVT ring-polymer MD with the PILE-L thermostat, forces from a socket.

    >>> from ase.build import molecule
    >>> xml = ipi_input(molecule("H2O"), PIMDConfig(beads=4), Address(name="w"))
    >>> "<initialize nbeads='4'>" in xml and "mode='pile_l'" in xml
    True
    """
    periodic = bool(atoms.pbc.any())
    socket = (
        f"<ffsocket name='euclidnn' mode='unix' pbc='{str(periodic).lower()}'>"
        f"<address>{address.name}</address>"
        if address.is_unix
        else f"<ffsocket name='euclidnn' mode='inet' pbc='{str(periodic).lower()}'>"
        f"<address>{address.host}</address><port>{address.port}</port>"
    )
    trajectories = ""
    if config.trajectory_interval:
        stride = config.trajectory_interval
        trajectories = (
            f"    <trajectory filename='pos' stride='{stride}' format='xyz' cell_units='angstrom'>"
            " positions{angstrom} </trajectory>\n"
            f"    <trajectory filename='xc' stride='{stride}' format='xyz' cell_units='angstrom'>"
            " x_centroid{angstrom} </trajectory>\n"
        )
    return f"""<simulation verbosity='low' safe_stride='100'>
  <output prefix='simulation'>
    <properties stride='{config.log_interval}' filename='out' flush='1'>
      [ step, time{{femtosecond}}, conserved{{electronvolt}}, temperature{{kelvin}},
        kinetic_cv{{electronvolt}}, potential{{electronvolt}} ]
    </properties>
{trajectories}    <checkpoint stride='1000'/>
  </output>
  <total_steps>{config.steps}</total_steps>
  <prng><seed>{config.seed}</seed></prng>
  {socket}<latency>1e-4</latency><timeout>0</timeout>
  </ffsocket>
  <system>
    <initialize nbeads='{config.beads}'>
      <file mode='xyz' units='angstrom'> init.xyz </file>
      <velocities mode='thermal' units='kelvin'> {config.temperature} </velocities>
    </initialize>
    <forces><force forcefield='euclidnn'/></forces>
    <ensemble><temperature units='kelvin'> {config.temperature} </temperature></ensemble>
    <motion mode='dynamics'>
      <fixcom> {config.fix_com} </fixcom>
      <dynamics mode='nvt'>
        <timestep units='femtosecond'> {config.timestep} </timestep>
        <thermostat mode='pile_l'>
          <tau units='femtosecond'> {config.relaxation_time} </tau>
          <pile_lambda> {config.pile_lambda} </pile_lambda>
        </thermostat>
      </dynamics>
    </motion>
  </system>
</simulation>
"""


def run_pimd(
    model,
    atoms: Atoms,
    config: PIMDConfig,
    out_dir: str | os.PathLike,
    *,
    dtype: str | None = None,
    device: str | None = None,
    progress: bool = True,
    threads: int = 1,
    client_command: Sequence[str] | None = None,
) -> PIMDResult:
    """Path-integral MD of ``atoms`` with i-PI, the model serving forces.

    Args:
        model: a model file, or a model (saved to ``out_dir/model.safetensors`` for the
            clients).
        atoms: the starting structure (every bead starts there).
        config: what to run.
        out_dir: the run folder (created once i-PI and the address are found good).
        dtype, device: of the clients' model (``"float32"``/``"float64"``; ``"cpu"``, …).
        threads: PyTorch threads of each client (1: fastest for molecules, and robust on a
            busy machine, where spinning OpenMP threads slow down many-fold).
        progress: show a progress bar with ns/day.
        client_command: run this instead of ``python -m euclidnn.md.client MODEL``
            (:mod:`euclidnn.md.client`); it is given ``STRUCTURE --address ADDRESS`` as
            further arguments.

    Raises ``ValueError`` for a stale or busy socket, a port in use; ``FileNotFoundError`` when
    i-PI is missing; ``ChildProcessError`` when i-PI or a client fails (naming its log);
    ``TimeoutError`` when no client served within ``config.client_timeout``;
    ``KeyboardInterrupt`` (saying at which step, and what the folder keeps) on Ctrl-C.
    """
    out_dir = Path(out_dir)
    address = run_address(config, out_dir)
    ipi = find_ipi()
    check_address_free(address)
    out_dir.mkdir(parents=True, exist_ok=True)
    if client_command is None:
        client_command = _client_command(model, out_dir, dtype, device, threads)
    for stale in ("simulation.out", "RESTART", "EXIT", "summary.json"):
        (out_dir / stale).unlink(missing_ok=True)
    _write_inputs(atoms, config, address, out_dir)
    start = time.perf_counter()
    try:
        with Processes(address) as processes:
            server = processes.start([ipi, "input.xml"], out_dir, "ipi.log")
            processes.wait_for_socket(server, config.connect_timeout)
            clients = [
                processes.start(
                    [*client_command, "structure.xyz", "--address", str(address)],
                    out_dir,
                    f"client_{k}.log",
                )
                for k in range(config.clients)
            ]
            _follow(server, clients, out_dir, config, address, progress)
    except KeyboardInterrupt:
        step = max(last_step(out_dir / "simulation.out"), 0)
        raise KeyboardInterrupt(
            f"interrupted at step {step} of {config.steps}; i-PI and its clients are stopped, "
            f"{out_dir} keeps i-PI's outputs so far (no summary.json)"
        ) from None
    seconds = time.perf_counter() - start
    return _summarise(atoms, config, out_dir, seconds)


def run_address(config: PIMDConfig, out_dir: str | os.PathLike) -> Address:
    """Where i-PI listens for a run in ``out_dir``: ``config.address``, else a UNIX socket
    named after the run folder (so a rerun after a crash finds, and reports, the stale one).

    >>> run_address(PIMDConfig(address="localhost:31415"), "run")
    Address(name=None, host='localhost', port=31415)
    """
    if config.address is not None:
        return Address.parse(config.address)
    digest = hashlib.sha1(str(Path(out_dir).resolve()).encode()).hexdigest()[:12]
    return Address(name=f"euclidnn_{digest}")


def _client_command(model, out_dir: Path, dtype, device, threads: int) -> list[str]:
    """``python -m euclidnn.md.client MODEL …`` (md's own force client); a model object is
    saved to ``out_dir/model.safetensors`` for it first."""
    if not isinstance(model, (str, os.PathLike)):
        from euclidnn.models import save_model

        save_model(model, out_dir / "model.safetensors")
        model = out_dir / "model.safetensors"
    command = [sys.executable, "-m", "euclidnn.md.client", str(Path(model).resolve())]
    command += ["--threads", str(threads)]
    command += ["--dtype", dtype] if dtype else []
    command += ["--device", device] if device else []
    return command


def _write_inputs(atoms: Atoms, config: PIMDConfig, address: Address, out_dir: Path) -> None:
    ase.io.write(out_dir / "structure.xyz", atoms, format="extxyz")
    if atoms.pbc.any():
        cell = atoms.cell.cellpar()
    else:
        cell = [MOLECULE_BOX] * 3 + [90.0] * 3
    lines = [str(len(atoms)), "# CELL(abcABC): " + " ".join(f"{c:.10f}" for c in cell)]
    lines[1] += " positions{angstrom} cell{angstrom}"
    for symbol, position in zip(atoms.get_chemical_symbols(), atoms.positions):
        lines.append(f"{symbol} " + " ".join(f"{x:.12f}" for x in position))
    (out_dir / "init.xyz").write_text("\n".join(lines) + "\n")
    (out_dir / "input.xml").write_text(ipi_input(atoms, config, address))


def _follow(
    server: Child,
    clients: list[Child],
    out_dir: Path,
    config: PIMDConfig,
    address: Address,
    progress: bool,
) -> None:
    """Wait for i-PI to finish, updating the progress bar from ``simulation.out``; a client
    that exits while i-PI runs, and no force evaluation within ``config.client_timeout``, are
    errors."""
    bar = tqdm(total=config.steps, disable=not progress, unit="step", smoothing=0.1)
    start, done, all_gone = time.perf_counter(), -1, None
    try:
        while server.poll() is None:
            _check_clients(clients)
            if clients and all(c.poll() is not None for c in clients):
                all_gone = all_gone or time.monotonic()
                if time.monotonic() - all_gone > CLIENTS_GONE_GRACE:
                    raise ChildProcessError(
                        f"every force client left and i-PI is still running: see {server.log_path}"
                    )
            step = last_step(out_dir / "simulation.out")
            if step < 0 and time.perf_counter() - start > config.client_timeout:
                raise TimeoutError(
                    f"no force client served i-PI at {address} within {config.client_timeout:g} s "
                    "(--client-timeout); start them with `euclidnn serve MODEL "
                    f"{out_dir / 'structure.xyz'} --address {address}`"
                )
            if step > max(done, 0):
                bar.update(step - max(done, 0))
                speed = ns_per_day(step, config.timestep, time.perf_counter() - start)
                bar.set_postfix_str(f"{speed:.3g} ns/day", refresh=False)
            done = max(done, step)
            time.sleep(0.05)
    finally:
        bar.close()
    if server.poll() != 0:
        raise ChildProcessError(f"i-PI exited with code {server.poll()}: see {server.log_path}")


def _check_clients(clients: list[Child]) -> None:
    """Raise ``ChildProcessError`` for a client that failed (a client leaves with 0 when i-PI
    tells it to, just before i-PI exits itself)."""
    for k, client in enumerate(clients):
        code = client.poll()
        if code not in (None, 0):
            raise ChildProcessError(
                f"force client {k} exited with code {code} while i-PI was running: "
                f"see {client.log_path}"
            )


#: columns of i-PI's simulation.out (ipi_input's <properties>)
_COLUMNS = 6


def last_step(path: str | os.PathLike) -> int:
    """The step of the last complete row of i-PI's ``simulation.out`` at ``path``; −1 before
    the first (i-PI writes a row's step before it has the forces for the rest of it) and when
    there is no such file."""
    try:
        with open(path, "rb") as f:
            offset = max(0, os.path.getsize(path) - 400)
            f.seek(offset)
            lines = f.read().decode(errors="replace").split("\n")
    except OSError:
        return -1
    # the first line may be the tail of a row (we read from its middle), the last one is being
    # written (it has no newline yet)
    for line in reversed(lines[1 if offset else 0 : -1]):
        fields = line.split()
        if len(fields) == _COLUMNS and not line.lstrip().startswith("#"):
            try:
                return int(float(fields[0]))
            except ValueError:
                return -1
    return -1


def _summarise(atoms: Atoms, config: PIMDConfig, out_dir: Path, seconds: float) -> PIMDResult:
    data = np.loadtxt(out_dir / "simulation.out", ndmin=2)  # step time conserved T K_cv V
    kept = data[int(config.equilibration_fraction * len(data)) :]
    kinetic_cv, error = block_average(kept[:, 4])
    steps = int(data[-1, 0])
    result = PIMDResult(
        steps=steps,
        beads=config.beads,
        num_atoms=len(atoms),
        timestep_fs=config.timestep,
        ns_per_day=ns_per_day(steps, config.timestep, seconds),
        mean_temperature_K=float(kept[:, 3].mean()),
        kinetic_cv_eV=kinetic_cv,
        kinetic_cv_error_eV=error,
        kinetic_classical_eV=1.5 * len(atoms) * units.kB * config.temperature,
        wall_seconds=seconds,
    )
    write_summary(out_dir, result, config)
    return result
