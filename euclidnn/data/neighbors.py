"""Neighbour lists with periodic boundaries, computed by vesin.

Edge convention (CONVENTIONS.md): edge e points from the neighbour ``edge_src[e]`` (j) to
the centre ``edge_dst[e]`` (i); messages flow src → dst and

    edge_vec = positions[edge_src] − positions[edge_dst] + edge_shift @ cell.

The list is full (both directions of every pair are present) and an atom is its own
neighbour only through a periodic image (non-zero ``edge_shift``).
"""

from __future__ import annotations

import numpy as np
import vesin

__all__ = ["neighbor_list"]


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc: np.ndarray | bool | None,
    r_max: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs closer than ``r_max``, including every periodic image.

    vesin (https://github.com/Luthaf/vesin) does the work: cell lists in O(n), any triclinic
    cell, mixed boundary conditions, and cells smaller than ``r_max`` (an atom then sees
    several images of itself and of each neighbour; the tests compare against a brute-force
    loop over all images, including a 1.5 Å cell at ``r_max`` = 4 Å). Directions without
    periodicity may have a zero cell vector.

    Args:
        positions: Cartesian coordinates in Å (need not be wrapped into the cell).
        cell: rows are the lattice vectors in Å; ``None`` or zeros for a molecule.
        pbc: periodic flags per lattice vector (one bool for all three).
        r_max: cutoff radius in Å; pairs with distance < ``r_max`` are edges.

    Returns:
        ``(edge_src, edge_dst, edge_shift)``, int64 arrays; ``edge_shift`` holds the integer
        lattice translations applied to ``edge_src``.

    Shapes:
        positions: [n_atoms, 3], cell: [3, 3], pbc: [3] →
        edge_src: [n_edges], edge_dst: [n_edges], edge_shift: [n_edges, 3]

    >>> pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    >>> src, dst, shift = neighbor_list(pos, None, False, r_max=1.5)
    >>> src.tolist(), dst.tolist(), shift.tolist()
    ([1, 0], [0, 1], [[0, 0, 0], [0, 0, 0]])
    >>> src, dst, shift = neighbor_list(pos[:1], np.eye(3), True, r_max=1.1)
    >>> len(src)  # six images of itself at 1 Å
    6
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions: expected shape [n_atoms, 3], got {positions.shape}")
    if not r_max > 0:
        raise ValueError(f"r_max: must be positive, got {r_max}")
    pbc = np.broadcast_to(np.asarray(False if pbc is None else pbc, dtype=bool), (3,)).copy()
    cell = np.zeros((3, 3)) if cell is None else np.ascontiguousarray(cell, dtype=np.float64)
    if cell.shape != (3, 3):
        raise ValueError(f"cell: expected shape [3, 3], got {cell.shape}")
    if not pbc.any():
        cell = np.zeros((3, 3))
    if len(positions) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros((0, 3), dtype=np.int64)

    # sorted=True: deterministic order (by centre, then neighbour)
    calculator = vesin.NeighborList(cutoff=float(r_max), full_list=True, sorted=True)
    i, j, shift = calculator.compute(positions, cell, pbc, "ijS")
    # vesin's pair (i, j, S) has vector positions[j] - positions[i] + S @ cell: j is the
    # neighbour (src), i the centre (dst).
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64).reshape(-1, 3)
    return j, i, shift
