"""The ``label`` run: sample (or reuse) the trajectory, then label its frames one by one into
an extxyz file, resuming what an interrupted run of the same command left."""

from __future__ import annotations

import io
import os
from pathlib import Path

from ..molecules import load_molecule
from .labellers import Level, _program, make_labeller
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
    """Sample ``sampling.num_frames`` configurations of ``molecule`` and label them into
    ``output`` (extxyz, eV/Å), resuming a previous run of the same command.

    ``threads``: PySCF's OpenMP threads; ``xtb_threads``: tblite's (sampling and xTB labels);
    each holds only while that program runs, so the caller's thread count (PyTorch's) is
    the same after the call as before. ``properties`` (``"dipole"``, e·Å; ``"polarizability"``,
    Å³) are labelled too, from the same SCF, with their units in every frame's header.
    Returns the labelled frames (``ase.Atoms`` with a single-point calculator).

    Raises:
        ValueError: for an unknown molecule, method or basis, or an existing output written
            with other settings (naming file, frame and field).
    """
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator
    from tqdm import tqdm

    atoms = load_molecule(molecule)
    labeller = make_labeller(level, threads, xtb_threads, properties)  # checks level, properties
    output = Path(output)
    header = {**level.info(_program(level)), "molecule": str(molecule)}
    if properties:
        header["properties"] = ",".join(properties)
        header.update({f"{name}_unit": PROPERTY_UNITS[name] for name in properties})
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
                energy, forces, *extra = labeller(frame)
            except RuntimeError as error:
                raise RuntimeError(f"{output}: frame {len(done)}: {error}") from error
            extra = extra[0] if extra else {}
            frame.info = {**header, **frame.info}
            if "polarizability" in extra:  # extxyz keeps a 3×3 info entry as JSON
                frame.info["polarizability"] = extra["polarizability"]
            calc = dict(energy=energy, forces=forces)
            if "dipole" in extra:
                calc["dipole"] = extra["dipole"]
            frame.calc = SinglePointCalculator(frame, **calc)
            text = io.StringIO()
            ase.io.write(text, frame, format="extxyz")
            file.write(text.getvalue())
            file.flush()
            os.fsync(file.fileno())
            done.append(frame)
            bar.update(1)
    return done
