"""Classical MD in LAMMPS (``euclidnn md --engine lammps --ranks N``): the same run folder as
:func:`euclidnn.md.run_md`, with LAMMPS's integrators, neighbour lists and MPI domain
decomposition doing the work and ``pair_style euclidnn`` the forces.

The run folder gets what LAMMPS needs — ``model.pt`` (the model exported by
:func:`euclidnn.export.export`), ``data.lmp`` and ``in.lammps`` (kept, to edit and rerun by hand:
``mpirun -np N lmp -in in.lammps``) — and what every ``euclidnn md`` run leaves: ``md.log``
(written by LAMMPS as the run goes, the same columns), ``trajectory.xyz`` (converted from
LAMMPS's dump when the run ends or is interrupted; positions, velocities and forces in the
structure's own frame, rotated back from LAMMPS's for a skewed cell) and ``summary.json``
(the same keys; ``ns_per_day`` from LAMMPS's loop time). LAMMPS's own output is in
``lammps.out``. Ctrl-C or a failed rank stops every rank (their process group).

Ensembles: NVE is ``fix nve``; NVT Langevin is ``fix nve`` + ``fix langevin`` (damping 1/γ);
NVT Bussi is ``fix nve`` + ``fix temp/csvr`` (the same Bussi–Donadio–Parrinello thermostat);
NPT is ``fix npt`` (Martyna–Tobias–Klein with Nosé–Hoover chains, as the ASE engine's), ``iso``
or ``tri`` (after ``change_box all triclinic``), the pressure converted from GPa to ``metal``
units' bar once, here; its log adds the volume, density, pressure and ``econserve``, and each
frame of the trajectory has its own cell. The temperature counts the same degrees of freedom
as the ASE engine (:func:`euclidnn.md.run.degrees_of_freedom`).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
from ase import Atoms, units

from euclidnn.export.lammps import model_lines
from euclidnn.md.run import MDConfig, MDResult, _result, log_columns, read_log, write_summary

__all__ = ["run_lammps_md", "lammps_input"]

_DUMP = "trajectory.dump"

#: each md.log column as a LAMMPS variable expression (metal units: eV, Å, ps, bar, g/cm³)
_LOG_EXPRESSIONS = {
    "step": "step",
    "time_fs": "step*dt*1000",
    "potential_eV": "pe",
    "kinetic_eV": "ke",
    "total_eV": "etotal",
    "temperature_K": "temp",
    "volume_A3": "vol",
    "density_g_cm3": "density",
    "pressure_GPa": f"press*{units.bar / units.GPa:.10g}",
    "conserved_eV": "econserve",  # etotal + the energy the thermostat and barostat exchanged
}


def lammps_input(
    atoms: Atoms,
    config: MDConfig,
    plugin: Path,
    symbols: list[str],
    dof: int,
    skin: float,
    chunk: int | str | None = None,
) -> str:
    """The LAMMPS input of a run: ``data.lmp`` and ``model.pt`` beside it, ``md.log`` and the
    dump written as it goes (``chunk``: the pair style's, see
    :func:`euclidnn.export.lammps.model_lines`)."""
    dt = config.timestep * 1e-3  # ps (metal units)
    seed = config.seed % 900_000_000 + 1  # LAMMPS wants a positive seed
    lines = [
        "# written by `euclidnn md --engine lammps`; rerun with: mpirun -np N lmp -in in.lammps",
        f"plugin load {plugin}",
        *model_lines("data.lmp", "model.pt", symbols, atoms.pbc, "s", chunk),
        f"neighbor {skin} bin",
        "neigh_modify every 1 delay 0 check yes",
        f"timestep {dt!r}",
        f"compute_modify thermo_temp extra/dof {3 * len(atoms) - dof}",  # 3N − dof
        f"velocity all create {config.temperature!r} {seed} mom yes "
        f"rot {'no' if atoms.pbc.any() else 'yes'} dist gaussian temp thermo_temp",
    ]
    if config.ensemble == "npt":
        # fix npt's own temperature compute counts 3N − 3, as dof does for a periodic cell
        coupling = {"isotropic": "iso", "triclinic": "tri"}[config.cell_fluctuations]
        if coupling == "tri":
            lines.append("change_box all triclinic")  # tri needs tilt factors, even at 0
        bar = config.pressure * units.GPa / units.bar  # GPa → bar, the pressure of metal units
        lines.append(
            f"fix integrate all npt temp {config.temperature!r} {config.temperature!r} "
            f"{config.relaxation_time * 1e-3!r} {coupling} {bar:.10g} {bar:.10g} "
            f"{config.barostat_time * 1e-3!r}"  # fs → ps
        )
    else:
        lines.append("fix integrate all nve")
    if config.ensemble == "nvt" and config.thermostat == "langevin":
        damp = 1e-3 / config.friction  # 1/γ in ps
        lines.append(f"fix thermostat all langevin {config.temperature!r} "
                     f"{config.temperature!r} {damp!r} {seed}")  # fmt: skip
    elif config.ensemble == "nvt":
        tau = config.relaxation_time * 1e-3
        lines.append(f"fix thermostat all temp/csvr {config.temperature!r} "
                     f"{config.temperature!r} {tau!r} {seed}")  # fmt: skip
    columns = log_columns(config)
    lines += [
        *(f"variable {c} equal {_LOG_EXPRESSIONS[c]}" for c in columns),
        f"fix log all print {config.log_interval} "
        f'"{" ".join(f"${{{c}}}" for c in columns)}" file md.log screen no '
        f'title "# {" ".join(columns)}"',
        f"thermo {max(config.log_interval, 100)}",
        "thermo_style custom step time pe ke etotal temp press vol",
    ]
    if config.trajectory_interval:
        lines += [
            f"dump trajectory all custom {config.trajectory_interval} {_DUMP} "
            "id type xu yu zu vx vy vz fx fy fz",
            "dump_modify trajectory sort id format float %.17g",
        ]
    lines += [f"run {config.steps}", ""]
    return "\n".join(lines)


def run_lammps_md(
    exported: Path,
    atoms: Atoms,
    config: MDConfig,
    out_dir: Path,
    symbols: list[str],
    ranks: int = 1,
    threads: int = 1,
    skin: float = 1.0,
    progress: bool = True,
    chunk: int | str | None = None,
) -> MDResult:
    """Run ``config`` on ``atoms`` in LAMMPS on ``ranks`` MPI ranks (``threads`` OpenMP threads
    each) with the exported model ``exported`` (knowing ``symbols``), in ``out_dir`` (which
    exists); see the module's docstring for what the folder gets. ``chunk``: the pair style's
    (:func:`euclidnn.export.lammps.model_lines`; ``chunk auto`` where None).

    Raises:
        ChildProcessError: LAMMPS stopped with an error (its last ``ERROR`` line).
        KeyboardInterrupt: after stopping every rank and writing the summary ``"interrupted"``.
    """
    from euclidnn.export.lammps import build_plugin, find_lammps, write_data
    from euclidnn.md.processes import Processes
    from euclidnn.md.run import degrees_of_freedom
    from euclidnn.md.serve import Address

    install = find_lammps()
    plugin = build_plugin(install)
    data_atoms = _boxed(atoms)
    prism = write_data(data_atoms, out_dir / "data.lmp", symbols)
    dof = degrees_of_freedom(atoms, config)
    text = lammps_input(atoms, config, plugin, symbols, dof, skin, chunk)
    (out_dir / "in.lammps").write_text(text)
    if exported.resolve() != (out_dir / "model.pt").resolve():
        (out_dir / "model.pt").write_bytes(exported.read_bytes())
    for name in ("md.log", _DUMP, "summary.json", "trajectory.xyz"):
        (out_dir / name).unlink(missing_ok=True)
    command = [str(install.mpirun), "-np", str(ranks), str(install.lmp), "-in", "in.lammps"]
    command += ["-log", "log.lammps"]
    start = time.perf_counter()
    status = "completed"
    with Processes(Address()) as processes:
        child = processes.start(command, out_dir, "lammps.out", env=install.environment(threads))
        try:
            _wait(child, out_dir, config, progress)
        except KeyboardInterrupt:
            status = "interrupted"
    seconds = time.perf_counter() - start
    log = _log_columns(out_dir, config)
    # a finished run did every step, logged or not (--log-interval may exceed --steps)
    steps = (
        config.steps if status == "completed" else int(log["step"][-1]) if len(log["step"]) else 0
    )
    _write_trajectory(out_dir, atoms, prism, symbols, log)
    loop = _loop_seconds(out_dir / "lammps.out")
    result = _result(atoms, config, dof, log, steps, loop if loop else seconds)
    write_summary(out_dir, result, config, status)
    if status == "interrupted":
        raise KeyboardInterrupt(f"interrupted at step {steps} of {config.steps}")
    return result


def _boxed(atoms: Atoms) -> Atoms:
    """``atoms`` with a box LAMMPS can read: a molecule (no pbc) gets one around it with
    10 Å of vacuum (LAMMPS shrink-wraps it)."""
    if atoms.pbc.any():
        return atoms
    boxed = atoms.copy()
    boxed.center(vacuum=10.0)
    return boxed


def _wait(child, out_dir: Path, config: MDConfig, progress: bool) -> None:
    """Until LAMMPS exits, with a progress bar over the steps in ``md.log``."""
    from tqdm import tqdm

    with tqdm(total=config.steps, unit="step", desc="MD (LAMMPS)", disable=not progress) as bar:
        while child.poll() is None:
            time.sleep(0.2)
            steps = _log_columns(out_dir, config)["step"]
            if len(steps):
                bar.update(int(steps[-1]) - bar.n)
    if child.poll() != 0:
        raise ChildProcessError(_lammps_error(child.log_path, child.poll()))


def _lammps_error(path: Path, code: int | None) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    errors = [line.strip() for line in text.splitlines() if "ERROR" in line]
    return errors[-1] if errors else f"LAMMPS exited with code {code}: see {path}"


def _log_columns(out_dir: Path, config: MDConfig) -> dict[str, np.ndarray]:
    """``md.log`` as :func:`read_log` reads it; no rows while it is missing or being written."""
    path = out_dir / "md.log"
    empty = {name: np.zeros(0) for name in log_columns(config)}
    if not path.exists() or path.stat().st_size == 0:
        return empty
    try:
        return read_log(path)
    except ValueError:  # a line being written
        return empty


def _loop_seconds(path: Path) -> float | None:
    """LAMMPS's "Loop time of T on N procs" (the MD steps alone), if it got there."""
    match = re.search(r"Loop time of ([0-9.eE+-]+) on", path.read_text(errors="replace"))
    return float(match.group(1)) if match else None


def _write_trajectory(out_dir: Path, atoms: Atoms, prism, symbols: list[str], log) -> None:
    """``trajectory.xyz`` from LAMMPS's dump: the structure's frame (each frame's cell, which
    NPT changes, rotated back like the positions), momenta in ASE units, and the potential
    energy of the step where ``md.log`` has it."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    path = out_dir / _DUMP
    if not path.exists():
        return
    energies = dict(zip(log["step"].astype(int).tolist(), log["potential_eV"].tolist()))
    frames = []
    for step, box, table in _dump_frames(path):
        frame = atoms.copy()
        if atoms.pbc.any():  # a molecule keeps its own cell (LAMMPS's box is shrink-wrapped)
            frame.set_cell(prism.vector_to_ase(box), scale_atoms=False)
        order = np.argsort(table[:, 0])
        table = table[order]
        frame.positions = prism.vector_to_ase(table[:, 2:5], wrap=False)
        velocities = prism.vector_to_ase(table[:, 5:8]) / (1000 * units.fs)  # Å/ps → ASE
        frame.set_momenta(velocities * frame.get_masses()[:, None])
        forces = prism.vector_to_ase(table[:, 8:11])
        frame.calc = SinglePointCalculator(frame, energy=energies.get(step), forces=forces)
        frame.info["step"] = step
        frames.append(frame)
    ase.io.write(out_dir / "trajectory.xyz", frames, format="extxyz")
    path.unlink()


def _dump_frames(path: Path):
    """(step, box [3, 3], [n_atoms, columns] table) for each frame of a LAMMPS custom dump; the
    box's rows are the lattice vectors in LAMMPS's frame (from its bounds and tilt factors)."""
    from ase.io.lammpsrun import construct_cell

    lines = path.read_text().splitlines()
    k = 0
    while k + 9 <= len(lines):
        step, n = int(lines[k + 1]), int(lines[k + 3])
        if k + 9 + n > len(lines):
            break  # a frame being written when the run stopped
        bounds = np.array([line.split() for line in lines[k + 5 : k + 8]], dtype=float)
        tilts = bounds[:, 2] if bounds.shape[1] > 2 else np.zeros(3)  # xy xz yz, or orthogonal
        box, _ = construct_cell(bounds[:, :2].ravel(), tilts)
        table = np.array([line.split() for line in lines[k + 9 : k + 9 + n]], dtype=float)
        yield step, box, table
        k += 9 + n
