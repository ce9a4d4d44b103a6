"""Labelling the selected frames with the reference method, each frame at most once.

A *reference* is a level of theory (:class:`euclidnn.data.label.Level`: GFN2-xTB, GFN1-xTB,
HF/DFT) or any ASE calculator factory — a class or picklable function returning a calculator,
such as ``ase.calculators.emt.EMT`` — so the loop runs on a cheap analytic potential in tests.
Frames are keyed by :func:`frame_key`, a hash of their atomic numbers, positions (rounded to
1e-6 Å, which extxyz keeps exactly), cell and pbc; labelled frames are appended to one extxyz
file, each written whole, flushed and fsync'd, so a killed run loses at most the frame being
computed and :func:`label_frames` never computes a key that the file already holds.

Frames are labelled in a pool of local processes (``workers`` > 1; started with ``spawn``,
which does not inherit PyTorch's OpenMP threads) or one by one in this process. Each worker
imports euclidnn (and so PyTorch) once: seconds, worth it for DFT labels, not for xTB labels of
a small molecule (a fraction of a second each). A script that labels with ``workers`` > 1 needs
the ``if __name__ == "__main__":`` guard that ``spawn`` asks for (the CLI has it).
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from ase import Atoms

from euclidnn.data.label import Level, make_labeller, read_complete_frames

__all__ = [
    "KEY",
    "frame_key",
    "reference_name",
    "check_reference",
    "label_frames",
    "read_labelled",
]

#: the ``info`` entry of a frame that holds its key
KEY = "learn_key"
#: atomic numbers tblite's GFN1-xTB and GFN2-xTB have parameters for (H–Rn)
XTB_ELEMENTS = range(1, 87)


def frame_key(atoms: Atoms) -> str:
    """A hash of what the reference method sees: numbers, positions rounded to 1e-6 Å, cell
    (rounded likewise) and pbc.

    >>> from ase.build import molecule
    >>> a = molecule("H2O")
    >>> b = a.copy(); b.positions += 1e-8
    >>> frame_key(a) == frame_key(b), frame_key(a) == frame_key(molecule("SO2"))
    (True, False)
    """
    digest = hashlib.sha1()
    digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    for array in (atoms.positions, atoms.cell.array):
        rounded = np.round(np.asarray(array, dtype=np.float64), 6) + 0.0  # no −0.0
        digest.update(rounded.tobytes())
    digest.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    return digest.hexdigest()[:20]


def reference_name(reference) -> str:
    """How the log names a reference: the level's name, or the calculator's."""
    if isinstance(reference, Level):
        return reference.name
    return getattr(reference, "__name__", type(reference).__name__)


def check_reference(reference, structures: Sequence[Atoms], names: Sequence[str]) -> None:
    """Refuse, naming the structure, an element a level of theory cannot treat: xTB has H–Rn,
    HF/DFT needs the basis for the element. An ASE calculator is not asked here (that would
    cost a calculation): its error on the first frame is reported by :func:`label_frames`,
    naming the structure."""
    if not isinstance(reference, Level):
        if not callable(reference):
            raise ValueError(f"reference {reference!r}: not a Level nor a calculator factory")
        return
    reference.check()
    for atoms, name in zip(structures, names):
        _check_elements(reference, atoms, name)


def _check_elements(level: Level, atoms: Atoms, name: str) -> None:
    symbols = sorted(set(atoms.get_chemical_symbols()), key=atoms.get_chemical_symbols().index)
    if level.is_xtb:
        bad = [
            s for s, z in zip(atoms.get_chemical_symbols(), atoms.numbers) if z not in XTB_ELEMENTS
        ]
        if bad:
            raise ValueError(
                f"{name}: element {bad[0]} cannot be labelled with {level.name} (tblite has "
                "parameters for H–Rn, Z = 1–86)"
            )
        return
    from pyscf import gto

    for symbol in symbols:
        try:
            gto.basis.load(level.basis, symbol)
        except Exception:  # PySCF raises several types for a missing basis
            raise ValueError(
                f"{name}: element {symbol} is not in the basis {level.basis} of {level.name}"
            ) from None


def _labeller(reference) -> Callable[[Atoms], tuple]:
    """``atoms -> (energy eV, forces eV/Å)`` for a reference (see the module docstring)."""
    if isinstance(reference, Level):
        return make_labeller(reference)

    def with_calculator(atoms: Atoms) -> tuple:
        atoms = atoms.copy()
        atoms.calc = reference()
        return float(atoms.get_potential_energy()), atoms.get_forces().copy()

    return with_calculator


def _label_one(reference, atoms: Atoms) -> tuple[float, np.ndarray]:
    """Label one frame (what a worker process runs). An ASE calculator's own error (an element
    it has no parameters for, …) becomes a ValueError naming the frame's structure."""
    try:
        energy, forces, *_ = _labeller(reference)(atoms)
    except Exception as error:  # the calculator's own error types
        if isinstance(reference, Level):
            raise
        where = atoms.info.get("learn_structure", atoms.get_chemical_formula())
        raise ValueError(
            f"{where}: the reference {reference_name(reference)} cannot label it "
            f"({type(error).__name__}: {error})"
        ) from error
    return float(energy), np.asarray(forces, dtype=float)


def read_labelled(path: str | os.PathLike) -> list[Atoms]:
    """The complete labelled frames of ``path`` (none when it does not exist); a trailing
    half frame that a kill left is cut off the file."""
    path = Path(path)
    if not path.exists():
        return []
    frames, length = read_complete_frames(path)
    if length < path.stat().st_size:
        with open(path, "r+b") as file:
            file.truncate(length)
    return frames


def _append(path: Path, frame: Atoms) -> None:
    """Append one labelled frame to the extxyz file, whole, flushed and fsync'd."""
    import ase.io

    text = io.StringIO()
    ase.io.write(text, frame, format="extxyz")
    with open(path, "a") as file:
        file.write(text.getvalue())
        file.flush()
        os.fsync(file.fileno())


def _labelled_frame(frame: Atoms, energy: float, forces: np.ndarray, info: dict) -> Atoms:
    from ase.calculators.singlepoint import SinglePointCalculator

    labelled = frame.copy()
    labelled.info.update({**info, KEY: frame_key(frame)})
    labelled.calc = SinglePointCalculator(labelled, energy=energy, forces=forces)
    return labelled


def label_frames(
    frames: Iterable[Atoms],
    reference,
    path: str | os.PathLike,
    *,
    workers: int = 1,
    info: dict | None = None,
) -> tuple[int, int]:
    """Label the ``frames`` whose key ``path`` does not hold yet and append them to ``path``;
    returns (labelled now, skipped because already labelled).

    Args:
        frames: unlabelled frames (positions rounded to 1e-6 Å by the explorer).
        reference: a :class:`Level` or an ASE calculator factory (module docstring).
        path: the extxyz file of all labelled frames.
        workers: processes labelling at once (1: here, one by one).
        info: entries added to each labelled frame's ``info`` (e.g. the iteration).
    """
    path = Path(path)
    known = {f.info.get(KEY) for f in read_labelled(path)}
    todo, seen, skipped = [], set(known), 0
    for frame in frames:
        key = frame_key(frame)
        if key in seen:
            skipped += 1
            continue
        todo.append(frame)
        seen.add(key)
    if workers <= 1 or len(todo) <= 1:
        for frame in todo:
            energy, forces = _label_one(reference, frame)
            _append(path, _labelled_frame(frame, energy, forces, info or {}))
        return len(todo), skipped
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_label_one, reference, frame) for frame in todo]
        for frame, future in zip(todo, futures):  # in order: the file is the same each run
            energy, forces = future.result()
            _append(path, _labelled_frame(frame, energy, forces, info or {}))
    return len(todo), skipped
