"""Learning curves: the power law MAE ∝ N^−β fitted to test errors at growing N."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["PowerLaw", "power_law_fit"]


class PowerLaw(NamedTuple):
    """MAE ≈ prefactor · N^−beta, with the standard error of beta (NaN with two points)."""

    beta: float
    beta_error: float
    prefactor: float


def power_law_fit(sizes: Sequence[float], errors: Sequence[float]) -> PowerLaw:
    """Least squares on log MAE = log a − β log N; σ_β from the residuals (n − 2 dof).

    >>> fit = power_law_fit([100, 200, 400, 800], [8.0, 4.0, 2.0, 1.0])
    >>> round(fit.beta, 6), round(fit.prefactor, 3), round(fit.beta_error, 6)
    (1.0, 800.0, 0.0)
    """
    x, y = np.log(np.asarray(sizes, float)), np.log(np.asarray(errors, float))
    if len(x) < 2 or not np.all(np.isfinite(y)):
        return PowerLaw(float("nan"), float("nan"), float("nan"))
    slope, intercept = np.polyfit(x, y, 1)
    if len(x) > 2:
        residual = y - (slope * x + intercept)
        error = np.sqrt(residual @ residual / (len(x) - 2) / ((x - x.mean()) ** 2).sum())
    else:
        error = float("nan")
    return PowerLaw(float(-slope), float(error), float(np.exp(intercept)))
