"""Data-set statistics for model initialisation: energy shifts, force scale, neighbours."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .graph import Graph
from .neighbors import neighbor_list
from .structure import Structure

__all__ = ["energy_shifts", "force_rms", "avg_num_neighbors"]


def energy_shifts(structures: Sequence[Structure]) -> dict[int, float]:
    """Per-species energies μ_Z (eV/atom) with E ≈ Σ_Z n_Z μ_Z, by least squares.

    Solves ``counts @ μ = energies`` with ``numpy.linalg.lstsq``, where ``counts[s, Z]``
    is the number of atoms of element Z in structure s. When compositions are linearly
    dependent (e.g. all structures have the same stoichiometry), the minimum-norm
    solution is returned: its Σ n_Z μ_Z still fits the energies.

    Raises:
        ValueError: no structure has an energy, or some have and some do not.

    >>> h2 = Structure([1, 1], [[0, 0, 0], [0, 0, 0.74]], energy=-2.0)
    >>> water = Structure([8, 1, 1], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], energy=-12.0)
    >>> {z: round(mu, 6) for z, mu in energy_shifts([h2, water]).items()}
    {1: -1.0, 8: -10.0}
    """
    missing = [i for i, s in enumerate(structures) if s.energy is None]
    if not structures or missing:
        raise ValueError(f"energy_shifts: structures {missing[:10]} have no energy")
    species = sorted({int(z) for s in structures for z in s.numbers})
    column = {z: k for k, z in enumerate(species)}
    counts = np.zeros((len(structures), len(species)))
    for row, s in enumerate(structures):
        for z, c in zip(*np.unique(s.numbers, return_counts=True)):
            counts[row, column[int(z)]] = c
    energies = np.array([s.energy for s in structures])
    shifts, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {z: float(shifts[k]) for z, k in column.items()}


def force_rms(structures: Sequence[Structure]) -> float:
    """Root mean square of all force components, eV/Å (NequIP's force scale).

    >>> s = Structure([1, 1], [[0, 0, 0], [0, 0, 0.74]], forces=[[0, 0, 1], [0, 0, -1]])
    >>> round(force_rms([s]), 6)  # sqrt(2 / 6)
    0.57735
    """
    forces = [s.forces for s in structures if s.forces is not None]
    if not forces:
        raise ValueError("force_rms: no structure has forces")
    stacked = np.concatenate(forces)
    return float(np.sqrt(np.mean(stacked**2)))


def avg_num_neighbors(
    data: Sequence[Structure] | Sequence[Graph] | Graph, r_max: float | None = None
) -> float:
    """Mean number of neighbours per atom (edges / atoms), counting periodic images.

    Args:
        data: Structures (then ``r_max`` in Å is required) or Graphs (their edges are
            counted; ``r_max`` must be ``None`` or equal to the graphs' cutoff, not checked).

    >>> s = Structure([1, 1, 1], [[0, 0, 0], [0, 0, 1], [0, 0, 2]])
    >>> avg_num_neighbors([s], r_max=1.5)  # 1 + 2 + 1 over 3 atoms
    1.3333333333333333
    """
    if isinstance(data, Graph):
        data = [data]
    n_edges = n_atoms = 0
    for item in data:
        if isinstance(item, Graph):
            n_edges += item.num_edges
            n_atoms += item.positions.shape[0]
        else:
            if r_max is None:
                raise ValueError("avg_num_neighbors: r_max is required for Structures")
            src, _, _ = neighbor_list(item.positions, item.cell, item.pbc, r_max)
            n_edges += len(src)
            n_atoms += item.num_atoms
    if n_atoms == 0:
        raise ValueError("avg_num_neighbors: no atoms")
    return n_edges / n_atoms
