"""Which explored frames to label: those the committee disagrees on, but not wildly, spread out
in time.

A frame is a *candidate* when sigma_low < σ_F ≤ sigma_high: below the lower bound the
committee agrees (the frame is known), above the upper bound the configuration is taken as
unphysical (the MD left the region any label could repair in one step) and is never labelled.
Candidates are taken in order of decreasing σ_F, each at least ``min_spacing`` MD steps away
from every frame taken before (neighbouring MD frames are nearly the same configuration), until
``max_frames`` are taken.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["candidates", "select_frames"]


def candidates(sigmas: Sequence[float], sigma_low: float, sigma_high: float) -> np.ndarray:
    """Indices of the frames with sigma_low < σ_F ≤ sigma_high.

    >>> candidates([0.01, 0.1, 0.3, 0.9], 0.05, 0.3).tolist()
    [1, 2]
    """
    sigmas = np.asarray(sigmas, dtype=float)
    return np.flatnonzero((sigmas > sigma_low) & (sigmas <= sigma_high))


def select_frames(
    sigmas: Sequence[float],
    steps: Sequence[int],
    sigma_low: float,
    sigma_high: float,
    max_frames: int,
    min_spacing: int = 0,
    trajectories: Sequence[int] | None = None,
) -> list[int]:
    """The frames to label: candidates (:func:`candidates`) by decreasing σ_F, each at least
    ``min_spacing`` steps from those already taken in the same trajectory, at most
    ``max_frames``; returned in the order of the input.

    Args:
        sigmas: σ_F of each frame, eV/Å.
        steps: the MD step of each frame.
        sigma_low, sigma_high: the bounds, eV/Å.
        max_frames: the most frames to take.
        min_spacing: MD steps between any two frames taken from one trajectory.
        trajectories: which trajectory each frame comes from (default: all from one).

    >>> select_frames([0.1, 0.2, 0.15, 0.5, 0.12], [0, 10, 20, 30, 40], 0.05, 0.3, 2, 15)
    [1, 4]
    """
    if sigma_low >= sigma_high:
        raise ValueError(f"sigma_low ({sigma_low}) must be below sigma_high ({sigma_high})")
    sigmas = np.asarray(sigmas, dtype=float)
    steps = np.asarray(steps, dtype=int)
    groups = np.zeros(len(sigmas), int) if trajectories is None else np.asarray(trajectories)
    pool = candidates(sigmas, sigma_low, sigma_high)
    taken: list[int] = []
    for index in pool[np.argsort(-sigmas[pool], kind="stable")]:
        if len(taken) >= max_frames:
            break
        close = [
            t
            for t in taken
            if groups[t] == groups[index] and abs(steps[t] - steps[index]) < min_spacing
        ]
        if not close:
            taken.append(int(index))
    return sorted(taken)
