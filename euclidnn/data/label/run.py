"""The ``label`` run: sample (or reuse) the trajectory, then label its frames one by one into
an extxyz file, resuming what an interrupted run of the same command left."""

from __future__ import annotations

import io
import os
from pathlib import Path

from .labellers import Level, _program, make_labeller
from .resume import _resume_output, _resume_trajectory
from .sampling import Sampling, load_molecule

__all__ = ["label"]


def label(
    molecule: str,
    output: str | os.PathLike,
    sampling: Sampling,
    level: Level,
    threads: int | None = None,
    progress: bool = True,
    xtb_threads: int | None = 1,
) -> list:
    """Sample ``sampling.num_frames`` configurations of ``molecule`` and label them into
    ``output`` (extxyz, eV/Å), resuming a previous run of the same command.

    ``threads``: PySCF's OpenMP threads; ``xtb_threads``: tblite's (sampling and xTB labels);
    each holds only while that program runs, so the caller's thread count (PyTorch's) is
    the same after the call as before.
    Returns the labelled frames (``ase.Atoms`` with a single-point calculator).

    Raises:
        ValueError: for an unknown molecule, method or basis, or an existing output written
            with other settings (naming file, frame and field).
    """
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator
    from tqdm import tqdm

    atoms = load_molecule(molecule)
    labeller = make_labeller(level, threads, xtb_threads)  # checks the level before any work
    output = Path(output)
    header = {**level.info(_program(level)), "molecule": str(molecule)}
    sampled_path = Path(f"{output}.sampled.xyz")
    sampled = _resume_trajectory(sampled_path, atoms, molecule, sampling, progress, xtb_threads)
    done = _resume_output(output, header, sampling, sampled)

    with (
        open(output, "a") as file,
        tqdm(
            total=sampling.num_frames,
            initial=len(done),
            desc=f"labelling ({level.name})",
            unit="frame",
            disable=not progress,
        ) as bar,
    ):
        for frame in sampled[len(done) :]:
            frame = frame.copy()
            frame.arrays.pop("momenta", None)  # kept in the sampled file only
            try:
                energy, forces = labeller(frame)
            except RuntimeError as error:
                raise RuntimeError(f"{output}: frame {len(done)}: {error}") from error
            frame.info = {**header, **frame.info}
            frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces)
            text = io.StringIO()
            ase.io.write(text, frame, format="extxyz")
            file.write(text.getvalue())
            file.flush()
            os.fsync(file.fileno())
            done.append(frame)
            bar.update(1)
    return done
