"""Test-suite marks shared by several files: ``from marks import slow_beyond``
(``tests/`` is on pytest's path, beside ``conftest.py``)."""

import pytest


def slow_beyond(cases, keep: int) -> list:
    """``cases`` (a list, or a dict's keys) as parameters, those after the first ``keep``
    marked ``slow``: each case of a bad-input table runs a command in a new process (~2–3 s),
    so the default suite (10-minute budget) runs a few of each table and ``make test-slow``
    the rest."""
    return [
        c
        if i < keep
        else pytest.param(*(c if isinstance(c, tuple) else (c,)), marks=pytest.mark.slow)
        for i, c in enumerate(cases)
    ]
