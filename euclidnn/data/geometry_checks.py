"""Checks of a structure's geometry before a command works on it: finite coordinates, no two
atoms on top of each other, a cutoff radius that is sensible for it.

Each raises ``ValueError`` with one line that names the structure (``where``: the file and
frame, or the molecule's name), the atoms or the option, and what would be valid, so that the
command line can print it as it is. Without them, NaN coordinates surface as "SVD did not
converge" deep in the symmetry code, atoms on top of each other as NaN forces, and a cutoff of
10⁶ Å as minutes in native neighbour-list code that Ctrl-C cannot stop.
"""

from __future__ import annotations

import math

import numpy as np

from .neighbors import neighbor_list
from .structure import MIN_DISTANCE

__all__ = ["MAX_CUTOFF", "MIN_DISTANCE", "check_cutoff", "check_positions"]

#: Å: the largest cutoff the commands accept (a molecule wider than this: its diameter + 1 Å).
#: Pairs grow as r³ in a crystal (10⁵ neighbours per atom at 50 Å), and beyond a molecule's
#: diameter there are none left to find.
MAX_CUTOFF = 50.0
_SEARCH_RADIUS = 2.0  # Å, of the neighbour search for atoms on top of each other


def _arrays(structure) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(numbers [n], positions [n, 3] Å, cell [3, 3] Å, pbc [3]) of an ``ase.Atoms`` or a
    :class:`~euclidnn.data.Structure`."""
    cell = structure.cell
    cell = np.zeros((3, 3)) if cell is None else np.asarray(getattr(cell, "array", cell), float)
    pbc = np.broadcast_to(np.asarray(structure.pbc, dtype=bool), (3,))
    return np.asarray(structure.numbers), np.asarray(structure.positions, float), cell, pbc


def _atom(numbers: np.ndarray, i: int) -> str:
    from ase.data import chemical_symbols

    z = int(numbers[i])
    return f"{i} ({chemical_symbols[z] if 0 < z < len(chemical_symbols) else z})"


def check_positions(structure, where: str, *, min_distance: float = MIN_DISTANCE) -> None:
    """Raise ``ValueError`` unless every coordinate (and the cell along periodic directions) is
    finite and no two atoms — periodic images included — are closer than ``min_distance`` Å.

    Args:
        structure: an ``ase.Atoms`` or a :class:`~euclidnn.data.Structure`.
        where: how the message names it, e.g. ``"water.xyz frame 3"``.
        min_distance: Å; closer atoms are "on top of each other".

    >>> from ase import Atoms
    >>> check_positions(Atoms("H2", [[0, 0, 0], [0, 0, 0.74]]), "H2")  # fine: no error
    >>> check_positions(Atoms("OH2", [[0, 0, 0], [0, 0, 1], [0, 0, 1.01]]), "w.xyz frame 0")
    Traceback (most recent call last):
    ...
    ValueError: w.xyz frame 0: atoms 1 (H) and 2 (H) are 0.01 Å apart, on top of each other (closer than 0.1 Å)
    >>> check_positions(Atoms("H2", [[0, 0, 0], [0, 0, float("nan")]]), "h2.xyz frame 0")
    Traceback (most recent call last):
    ...
    ValueError: h2.xyz frame 0: atom 1 (H) has NaN or infinite coordinates
    """
    numbers, positions, cell, pbc = _arrays(structure)
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if len(bad):
        listed = ", ".join(_atom(numbers, i) for i in bad[:5]) + (", …" if len(bad) > 5 else "")
        which = f"atom {listed} has" if len(bad) == 1 else f"{len(bad)} atoms ({listed}) have"
        raise ValueError(f"{where}: {which} NaN or infinite coordinates")
    if pbc.any() and not np.isfinite(cell[pbc]).all():
        raise ValueError(f"{where}: the cell has NaN or infinite entries: {cell.tolist()}")
    # searched farther than min_distance: vesin's cell list has bins of the cutoff's size, and
    # 0.1 Å bins make it ten times slower than 2 Å ones (which find only bonded neighbours)
    src, dst, shift = neighbor_list(positions, cell, pbc, max(min_distance, _SEARCH_RADIUS))
    distances = np.linalg.norm(positions[src] - positions[dst] + shift @ cell, axis=1)
    if len(distances) and distances.min() < min_distance:
        k = int(np.argmin(distances))
        i, j = sorted((int(dst[k]), int(src[k])))
        image = " (with a periodic image)" if shift[k].any() else ""
        raise ValueError(
            f"{where}: atoms {_atom(numbers, i)} and {_atom(numbers, j)}{image} are "
            f"{distances[k]:.2g} Å apart, on top of each other (closer than {min_distance:g} Å)"
        )


def check_cutoff(r_max: float, option: str, structure=None, *, limit: float = MAX_CUTOFF) -> None:
    """Raise ``ValueError``, naming ``option``, unless ``r_max`` is a finite positive number
    of at most ``limit`` Å (for a molecule wider than that: at most its diameter + 1 Å, beyond
    which no pair is left to find).

    >>> check_cutoff(6.0, "--r-max")
    >>> check_cutoff(1e6, "--r-max")
    Traceback (most recent call last):
    ...
    ValueError: --r-max 1000000.0: must be a positive number of at most 50 Å
    """
    allowed = limit
    if structure is not None:
        _, positions, _, pbc = _arrays(structure)
        if not pbc.any() and len(positions) > 1 and np.isfinite(positions).all():
            extent = np.linalg.norm(positions.max(axis=0) - positions.min(axis=0))
            allowed = max(limit, float(extent) + 1.0)
    if not (isinstance(r_max, (int, float)) and math.isfinite(r_max) and 0 < r_max <= allowed):
        raise ValueError(f"{option} {r_max}: must be a positive number of at most {allowed:g} Å")
