"""The learning rate of a run with a deadline: a short warm-up, then a decay that reaches the
minimum exactly when the time budget is spent.

The rate is a function of the *elapsed training time* t (seconds, validation included, summed
over resumes: what ``run.minutes`` counts), not of the epoch, because the time an epoch takes
varies (validation, other work on the machine, the batch sizes) while the deadline does not. A
run that uses :class:`DeadlineSchedule` therefore spends its whole budget: the rate is still
falling until the last step, and nothing but a divergence ends the run early.

What a resume guarantees: the schedule keeps no state of its own but the factor of the
divergence recoveries (``TrainState.lr_scale``); the rate is recomputed from the elapsed time
recorded in the checkpoint, so a run interrupted and resumed with the same budget follows the
same curve lr(t), continuous across the resume. The weights are not bitwise those of an
uninterrupted run — which step falls at which t depends on the machine's speed, in the first
run as in a second one — but every step uses the rate of the curve at its own t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["DeadlineSchedule"]


@dataclass(frozen=True)
class DeadlineSchedule:
    """The learning rate after t seconds of a run with a budget of T seconds.

    With p the peak rate, m the minimum and w the warm-up (seconds):

        warm-up   lr(t) = m + (p − m) · t / w                                0 ≤ t < w
        cosine    lr(t) = m + (p − m) · ½ (1 + cos(π (t − w) / (T − w)))     w ≤ t ≤ T
        linear    lr(t) = m + (p − m) · (T − t) / (T − w)                    w ≤ t ≤ T

    and lr(t) = m for t ≥ T. The curve is continuous, rises during the warm-up, falls
    monotonically after it, and is m at the deadline.

    Attributes:
        peak_lr: p, reached at the end of the warm-up (at least ``min_lr``).
        min_lr: m, at t = 0 and at the deadline.
        budget: T, seconds.
        warmup: w, seconds (0 ≤ w < T).
        shape: ``"cosine"`` (default) or ``"linear"`` decay.

    >>> curve = DeadlineSchedule(peak_lr=1e-2, min_lr=1e-4, budget=100.0, warmup=10.0)
    >>> [round(curve(t), 6) for t in (0, 5, 10, 55, 100, 120)]
    [0.0001, 0.00505, 0.01, 0.00505, 0.0001, 0.0001]
    """

    peak_lr: float
    min_lr: float
    budget: float
    warmup: float = 0.0
    shape: Literal["cosine", "linear"] = "cosine"

    def __post_init__(self) -> None:
        if not 0 <= self.warmup < self.budget:
            raise ValueError(f"warm-up {self.warmup} s must lie in [0, budget {self.budget} s)")

    def __call__(self, elapsed: float) -> float:
        """The rate after ``elapsed`` seconds of training."""
        if elapsed < self.warmup:
            fraction = elapsed / self.warmup
        else:
            x = min((elapsed - self.warmup) / (self.budget - self.warmup), 1.0)
            fraction = 0.5 * (1 + math.cos(math.pi * x)) if self.shape == "cosine" else 1 - x
        return self.min_lr + (max(self.peak_lr, self.min_lr) - self.min_lr) * fraction

    def describe(self) -> str:
        """One line for the log.

        >>> for part in DeadlineSchedule(5e-3, 1e-5, 300.0, 15.0).describe().split(", "):
        ...     print(part)
        learning rate: warm-up to 0.005 in 0.25 min
        then cosine decay to 1e-05 at the 5 min deadline
        """
        return (
            f"learning rate: warm-up to {self.peak_lr:.3g} in {self.warmup / 60:.3g} min, then "
            f"{self.shape} decay to {self.min_lr:.3g} at the {self.budget / 60:.3g} min deadline"
        )
