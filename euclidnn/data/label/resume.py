"""Resuming a run: the complete frames of a file a killed run left, and whether they belong to
the run being resumed (same molecule, settings and trajectory)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from euclidnn.files import replacing

from .sampling import Sampling, sample

__all__ = ["read_complete_frames"]


def read_complete_frames(path: str | os.PathLike) -> tuple[list, int]:
    """Read an extxyz file, tolerating a truncated last frame.

    Returns the complete frames and the byte length they occupy; a run that was killed while
    writing leaves a trailing partial frame, which is not returned (truncate the file to the
    returned length to drop it).

    Raises:
        ValueError: naming file and frame, for a broken frame that is not the last one.
    """
    import ase.io

    data = Path(path).read_bytes()
    lines = data.splitlines(keepends=True)
    frames, offset, line_no = [], 0, 0
    while line_no < len(lines):
        start, index = line_no, len(frames)
        try:
            num_atoms = int(lines[line_no].split()[0])
        except (ValueError, IndexError):
            num_atoms = -1
        block = lines[start : start + num_atoms + 2] if num_atoms >= 0 else lines[start:]
        complete = num_atoms >= 0 and len(block) == num_atoms + 2 and block[-1].endswith(b"\n")
        is_last = start + max(num_atoms, 0) + 2 >= len(lines)
        frame, error = None, "line 1: expected the number of atoms"
        if complete:
            try:
                frame = ase.io.read(io.StringIO(b"".join(block).decode()), format="extxyz")
            except Exception as exc:  # ase raises many types on malformed text
                error = str(exc)
        if frame is None:
            if is_last:
                break  # a partial trailing frame: the run was killed while writing it
            raise ValueError(f"{path}: frame {index}: cannot parse ({error})")
        frames.append(frame)
        offset += sum(len(line) for line in block)
        line_no = start + num_atoms + 2
    return frames, offset


def _check_matches(path, index: int, frame, expected, keys: dict) -> None:
    """Raise if an existing frame does not belong to the requested run."""
    for key, value in keys.items():
        found = frame.info.get(key)
        found = found.item() if isinstance(found, np.generic) else found
        if found != value:
            raise ValueError(
                f"{path}: frame {index}: {key}={found!r} but this run has "
                f"{value!r}; choose another output file or the same settings"
            )
    same = np.array_equal(frame.numbers, expected.numbers) and np.allclose(
        frame.positions, expected.positions, atol=1e-6
    )
    if not same:
        raise ValueError(f"{path}: frame {index}: positions differ from the sampled trajectory")
    _check_same_cell(path, index, frame, expected, "the sampled trajectory's")


def _check_same_cell(path, index: int, frame, expected, whose: str) -> None:
    """Raise if ``frame``'s cell or pbc differ from ``expected``'s (``whose`` names it)."""
    if not np.array_equal(frame.pbc, expected.pbc):
        raise ValueError(
            f"{path}: frame {index}: pbc={frame.pbc.tolist()} but {whose} is "
            f"{expected.pbc.tolist()}; choose another output file or the same structure"
        )
    if not np.allclose(np.asarray(frame.cell), np.asarray(expected.cell), atol=1e-6):
        raise ValueError(
            f"{path}: frame {index}: its cell differs from {whose}; "
            "choose another output file or the same structure"
        )


def _resume_trajectory(
    sampled_path: Path, atoms, molecule: str, sampling: Sampling, progress: bool, xtb_threads
) -> list:
    """The first ``sampling.num_frames`` frames of the sampled trajectory: those of an earlier
    run when it has enough of them, else a new run of the MD, which must start with them."""
    sampled = read_complete_frames(sampled_path)[0] if sampled_path.is_file() else []
    for index, frame in enumerate(sampled[:1]):
        _check_matches(sampled_path, index, frame, frame, sampling.info())
        if not np.array_equal(frame.numbers, atoms.numbers):
            raise ValueError(f"{sampled_path}: frame 0: numbers differ from {molecule!r}")
        _check_same_cell(sampled_path, index, frame, atoms, f"{molecule!r}'s")  # NVT: fixed
    if len(sampled) < sampling.num_frames:
        # the old file stays until the new run is known to extend the same trajectory
        with replacing(sampled_path) as new_path:
            new = sample(atoms, sampling, new_path, progress=progress, xtb_threads=xtb_threads)
            for index, frame in enumerate(sampled):
                _check_matches(sampled_path, index, frame, new[index], {})
        sampled = new
    return sampled[: sampling.num_frames]


def _resume_output(output: Path, header: dict, sampling: Sampling, sampled: list) -> list:
    """The labelled frames an earlier run left in ``output`` (checked against this run's
    ``header``, settings and trajectory); a half-written last frame is cut off the file."""
    done, length = read_complete_frames(output) if output.is_file() else ([], 0)
    if output.is_file() and output.stat().st_size != length:
        os.truncate(output, length)  # drop the frame a killed run left half-written
    for index, frame in enumerate(done):
        keys = {**header, **sampling.info(), "sampling_frame": index}
        _check_matches(output, index, frame, sampled[min(index, len(sampled) - 1)], keys)
    return done[: sampling.num_frames]
