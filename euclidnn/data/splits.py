"""Train / validation / test splits: random by count with a seed, or contiguous blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np

__all__ = ["Split", "split", "split_indices", "split_blocks"]

T = TypeVar("T")


class Split(NamedTuple):
    """The three parts of a data set (items, or indices from :func:`split_indices`)."""

    train: list[Any]
    valid: list[Any]
    test: list[Any]


def _counts(n: int, n_train: int, n_valid: int, n_test: int | None) -> tuple[int, int, int]:
    for name, value in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
        if value is not None and (int(value) != value or value < 0):
            raise ValueError(f"{name}: must be a non-negative integer, got {value!r}")
    n_test = max(n - n_train - n_valid, 0) if n_test is None else n_test
    if n_train + n_valid + n_test > n:
        raise ValueError(
            f"split: n_train + n_valid + n_test = {n_train} + {n_valid} + {n_test} "
            f"exceeds the {n} structures available"
        )
    return int(n_train), int(n_valid), int(n_test)


def split_indices(
    n: int, n_train: int, n_valid: int, n_test: int | None = None, seed: int = 0
) -> Split:
    """Random disjoint index sets of the given sizes; ``n_test=None`` takes the rest.

    The permutation depends only on ``n`` and ``seed`` (NumPy's PCG64), so growing
    ``n_train`` with a fixed seed keeps earlier training indices (nested learning curves),
    and the validation set (and a test set of fixed ``n_test``) is drawn from the end of the
    permutation, unchanged by ``n_train``.

    >>> split_indices(10, 3, 2, seed=0).train
    [4, 6, 2]
    >>> [len(part) for part in split_indices(10, 3, 2, seed=0)]
    [3, 2, 5]
    """
    n_train, n_valid, n_test = _counts(n, n_train, n_valid, n_test)
    order = np.random.default_rng(seed).permutation(n).tolist()
    valid = order[n - n_valid :] if n_valid else []
    test = order[n - n_valid - n_test : n - n_valid] if n_test else []
    return Split(order[:n_train], valid, test)


def split(
    items: Sequence[T], n_train: int, n_valid: int, n_test: int | None = None, seed: int = 0
) -> Split:
    """Random split of ``items`` by count with a seed (see :func:`split_indices`).

    >>> parts = split(list("abcdefghij"), n_train=6, n_valid=2, seed=1)
    >>> sorted(parts.train + parts.valid + parts.test) == list("abcdefghij")
    True
    """
    indices = split_indices(len(items), n_train, n_valid, n_test, seed)
    return Split(*([items[i] for i in part] for part in indices))


def split_blocks(
    items: Sequence[T], n_train: int, n_valid: int, n_test: int | None = None, gap: int = 0
) -> Split:
    """Contiguous split of a trajectory: train first, then valid, then test, in order.

    Consecutive MD frames are correlated; contiguous blocks (optionally separated by ``gap``
    discarded frames) keep the validation and test frames from being near-copies of training
    frames. ``n_test=None`` takes the rest after the last gap.

    >>> split_blocks(list(range(10)), 4, 2, gap=1)
    Split(train=[0, 1, 2, 3], valid=[5, 6], test=[8, 9])
    """
    if gap < 0:
        raise ValueError(f"gap: must be non-negative, got {gap}")
    n = len(items)
    available = n - 2 * gap
    n_train, n_valid, n_test = _counts(available, n_train, n_valid, n_test)
    start_valid = n_train + gap
    start_test = start_valid + n_valid + gap
    return Split(
        list(items[:n_train]),
        list(items[start_valid : start_valid + n_valid]),
        list(items[start_test : start_test + n_test]),
    )
