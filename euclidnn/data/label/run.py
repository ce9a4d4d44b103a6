"""The ``label`` run: sample (or reuse) the trajectory, then label its frames one by one into
an extxyz file, resuming what an interrupted run of the same command left."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..molecules import load_molecule
from .inputs import check_structure
from .labellers import Level, _program, make_labeller, periodic_info
from .properties import PROPERTY_UNITS
from .resume import _resume_output, _resume_trajectory
from .sampling import Sampling

__all__ = ["label"]


def label(
    molecule: str,
    output: str | os.PathLike,
    sampling: Sampling,
    level: Level,
    threads: int | None = None,
    progress: bool = True,
    xtb_threads: int | None = 1,
    properties=(),
) -> list:
    """Sample ``sampling.num_frames`` configurations of ``molecule`` (a molecule or a periodic
    cell) and label them into ``output`` (extxyz, eV/Å), resuming a previous run of the same
    command.

    A periodic cell (an extxyz file with ``Lattice=`` and ``pbc="T T T"``) keeps its cell and
    pbc in every frame, is sampled with the defaults :meth:`Sampling.resolve` gives a cell
    (the labelling method's MD among them), and is labelled with xTB only, stress included
    (eV/Å³, positive = tensile); its header states the k-point sampling (Γ) and the
    electrostatics (Ewald) of tblite (:func:`.labellers.periodic_info`).

    ``threads``: PySCF's OpenMP threads; ``xtb_threads``: tblite's (sampling and xTB labels);
    each holds only while that program runs, so the caller's thread count (PyTorch's) is
    the same after the call as before. ``properties`` (``"dipole"``, e·Å; ``"polarizability"``,
    Å³) are labelled too, from the same SCF, with their units in every frame's header.
    Returns the labelled frames (``ase.Atoms`` with a single-point calculator).

    Ctrl-C (KeyboardInterrupt) is passed on to the caller; ``output`` then holds whole frames
    only (a frame is written with the interrupt held back) and the same call resumes.

    Raises:
        ValueError: for an unknown molecule, method or basis; an ``output`` that is a
            directory; a structure with non-finite coordinates, atoms on top of each other,
            or a cell periodic in some directions only or without volume; a periodic cell
            with HF/DFT; an existing output written with other settings (naming file, frame
            and field).
    """
    output = Path(output)
    if output.is_dir():
        raise ValueError(
            f"{output}: is a directory; the output is the extxyz file to write "
            f"(e.g. {output / 'frames.xyz'})"
        )
    atoms = load_molecule(molecule)
    check_structure(atoms, molecule)
    labeller = make_labeller(level, threads, xtb_threads, properties)  # checks level, properties
    header = _header(level, molecule, properties, periodic=bool(atoms.pbc.any()))
    sampling = sampling.resolve(atoms, level)
    sampled_path = Path(f"{output}.sampled.xyz")
    sampled = _resume_trajectory(sampled_path, atoms, molecule, sampling, progress, xtb_threads)
    done = _resume_output(output, header, sampling, sampled)
    _label_frames(output, sampled, done, labeller, header, progress, level.name)
    return done


def _header(level: Level, molecule, properties, periodic: bool) -> dict:
    """Fields every frame's header records: level of theory, program, units, the structure's
    name; the properties and their units; for a cell, k-points, electrostatics, stress unit."""
    header = {**level.info(_program(level)), "molecule": str(molecule)}
    if properties:
        header["properties"] = ",".join(properties)
        header.update({f"{name}_unit": PROPERTY_UNITS[name] for name in properties})
    if periodic:
        header.update(periodic_info(level, molecule))  # refuses HF/DFT for a cell
    return header


def _label_frames(
    output: Path, sampled: list, done: list, labeller, header: dict, progress: bool, name: str
) -> None:
    """Label the frames of ``sampled`` after the ``done`` ones, appending each to ``output``
    (flushed and fsync'd) and to ``done``."""
    from tqdm import tqdm

    with (
        open(output, "a") as file,
        tqdm(
            total=len(sampled),
            initial=len(done),
            desc=f"labelling ({name})",
            unit="frame",
            disable=not progress,
        ) as bar,
    ):
        for frame in sampled[len(done) :]:
            try:
                frame = _labelled(frame, labeller, header)
            except RuntimeError as error:
                raise RuntimeError(f"{output}: frame {len(done)}: {error}") from error
            _append(file, frame)
            done.append(frame)
            bar.update(1)


def _labelled(frame, labeller, header: dict):
    """A copy of the sampled ``frame`` with the labels (a single-point calculator) and the
    header fields."""
    from ase.calculators.singlepoint import SinglePointCalculator

    frame = frame.copy()
    frame.arrays.pop("momenta", None)  # kept in the sampled file only
    energy, forces, *extra = labeller(frame)
    extra = extra[0] if extra else {}
    frame.info = {**header, **frame.info}
    if "polarizability" in extra:  # extxyz keeps a 3×3 info entry as JSON
        frame.info["polarizability"] = extra["polarizability"]
    calc = dict(energy=energy, forces=forces)
    calc.update({name: extra[name] for name in ("dipole", "stress") if name in extra})
    frame.calc = SinglePointCalculator(frame, **calc)
    return frame


def _append(file, frame) -> None:
    """Append ``frame`` to the open extxyz ``file`` whole: written, flushed and fsync'd with
    Ctrl-C held back, so that an interrupted run leaves no half frame."""
    import ase.io

    text = io.StringIO()
    ase.io.write(text, frame, format="extxyz")
    with _interrupt_held_back():
        file.write(text.getvalue())
        file.flush()
        os.fsync(file.fileno())


@contextmanager
def _interrupt_held_back() -> Iterator[None]:
    """Run the block with SIGINT (Ctrl-C) held back; one that came in meanwhile is raised
    again, to whatever handler was installed, when the block ends. Outside the main thread
    (where Python delivers no signal) the block just runs."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        if received:
            signal.raise_signal(signal.SIGINT)
