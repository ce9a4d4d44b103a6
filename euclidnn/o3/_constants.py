"""Tables of constants (Clebsch–Gordan, polynomial coefficients) computed once per argument.

They depend only on their arguments (degrees, normalization, dtype, device), never on data,
and are made outside inference mode whatever the caller's mode: a table first asked for inside
``torch.inference_mode()`` would otherwise be an inference tensor, which autograd refuses to
save for every later call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

_F = TypeVar("_F", bound=Callable)


def constant_table(fn: _F) -> _F:
    """``functools.cache`` of ``fn``, evaluated with inference mode off."""

    @functools.cache
    @functools.wraps(fn)
    def table(*args):
        with torch.inference_mode(False):
            return fn(*args)

    return table  # type: ignore[return-value]
