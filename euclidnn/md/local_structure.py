"""Local structure by species: partial pair distribution functions g_AB(r) and bond-angle
distributions of triplets A–B–C, for periodic cells (every periodic image, through the
neighbour list of :mod:`euclidnn.data.neighbors`) and molecules alike.

For a glass such as Li₄P₂O₇: ``partial_rdf(frames, ("Li", "O"), 6.0)`` gives the Li–O
coordination shell, ``bond_angle_distribution(frames, ("P", "O", "P"), 1.9)`` the bridging
P–O–P angle at O and ``("O", "P", "O")`` the tetrahedral angle at P.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from euclidnn.data.neighbors import neighbor_list

__all__ = [
    "AngleDistribution",
    "bond_angle_distribution",
    "distribution_distance",
    "partial_rdf",
    "sampling_distance",
    "species_mask",
]


def species_mask(atoms: Atoms, symbol: str, what: str) -> np.ndarray:
    """Which atoms of ``atoms`` are of element ``symbol``; ``ValueError`` naming ``what`` (the
    pair or triplet asked for) for an unknown element or one the structure does not hold.

    Shapes: → [n_atoms] bool

    >>> from ase.build import molecule
    >>> species_mask(molecule("H2O"), "H", "O-H").tolist()
    [False, True, True]
    >>> species_mask(molecule("H2O"), "P", "P-O")
    Traceback (most recent call last):
    ...
    ValueError: P-O: the structure holds no P (it holds H, O)
    """
    if symbol not in atomic_numbers or symbol == "X":
        raise ValueError(f"{what}: {symbol!r} is not a chemical element")
    mask = atoms.numbers == atomic_numbers[symbol]
    if not mask.any():
        held = ", ".join(sorted(set(atoms.get_chemical_symbols())))
        raise ValueError(f"{what}: the structure holds no {symbol} (it holds {held})")
    return mask


def _edges(atoms: Atoms, r_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(edge_src, edge_dst, edge_vec [n_edges, 3] Å) of every pair closer than ``r_max``,
    periodic images included."""
    cell = atoms.cell.array
    src, dst, shift = neighbor_list(atoms.positions, cell, atoms.pbc, r_max)
    return src, dst, atoms.positions[src] - atoms.positions[dst] + shift @ cell


def partial_rdf(
    frames: list[Atoms], pair: tuple[str, str], r_max: float, bins: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    r"""Partial pair distribution g_AB(r) of a set of frames on ``bins`` shells of [0, r_max] Å.

    Periodic (all three directions): B neighbours around each A atom, divided by what an ideal
    gas of the B atoms at the cell's density would put in the same shell,

        g_AB(r) = V / (N_A N'_B) ⟨Σ_{i∈A} Σ_{j∈B, j≠i} δ(r − r_ij)⟩ / (4π r²),

    with N'_B = N_B − 1 for A = B and N_B otherwise, so g_AB → 1 at large r and g_AB = g_BA.
    The number of B atoms within r of an A atom is ∫₀^r 4π s² (N'_B / V) g_AB(s) ds. Every
    periodic image counts; for a liquid or glass keep r_max at most half the cell's shortest
    height, beyond which an atom meets its own images.

    Molecule: the density of B neighbours per A atom, n_AB(r) = (1/N_A) ⟨Σ δ(r − r_ij)⟩ in
    Å⁻¹, whose integral to r is the mean number of B atoms within r of an A atom (as
    :func:`~euclidnn.md.analysis.pair_distribution` does for all atoms).

    Shapes: → (r [bins] Å, g [bins])

    >>> from ase.build import bulk
    >>> salt = bulk("CsCl", "cesiumchloride", a=4.0).repeat(3)
    >>> r, g = partial_rdf([salt], ("Cs", "Cl"), r_max=4.0, bins=40)
    >>> float(r[g.argmax()])  # first Cl shell at a √3 / 2 = 3.46 Å
    3.45
    """
    a, b = pair
    what = f"{a}-{b}"
    edges = np.linspace(0.0, r_max, bins + 1)
    counts = np.zeros(bins)
    for atoms in frames:
        in_a, in_b = species_mask(atoms, a, what), species_mask(atoms, b, what)
        src, dst, vectors = _edges(atoms, r_max)
        keep = in_a[dst] & in_b[src]
        counts += np.histogram(np.linalg.norm(vectors[keep], axis=1), bins=edges)[0]
    n_a = int(species_mask(frames[0], a, what).sum())
    n_b = int(species_mask(frames[0], b, what).sum()) - (a == b)
    if frames[0].pbc.all():
        if n_b == 0:
            raise ValueError(f"{what}: one {a} atom has no other {b} atom to pair with")
        volume = np.mean([atoms.get_volume() for atoms in frames])
        shells = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
        g = counts * volume / (n_a * n_b * len(frames) * shells)
    else:
        g = counts / (n_a * len(frames) * (edges[1] - edges[0]))
    return 0.5 * (edges[1:] + edges[:-1]), g


class AngleDistribution(NamedTuple):
    """Bond angles A–B–C at the centre B over all frames.

    Attributes:
        angle: bin centres, degrees [bins] on [0, 180].
        density: histogram normalised to unit area, per degree [bins] (zeros if ``count`` = 0).
        count: number of angles found.
        mean: mean angle, degrees (NaN if ``count`` = 0).
    """

    angle: np.ndarray
    density: np.ndarray
    count: int
    mean: float


def bond_angle_distribution(
    frames: list[Atoms],
    triplet: tuple[str, str, str],
    cutoffs: float | tuple[float, float],
    bins: int = 180,
) -> AngleDistribution:
    """Distribution of the angle θ_ABC at the centre B between a neighbour A within
    ``cutoffs[0]`` Å of B and a neighbour C within ``cutoffs[1]`` Å of B (one number: both),

        cos θ = (r_A − r_B)·(r_C − r_B) / (|r_A − r_B| |r_C − r_B|),

    with each neighbour in its nearest (or any other) periodic image, as the neighbour list
    finds it: a bond across the cell boundary counts like any other. Each pair of distinct
    neighbours (two images of one atom are distinct) makes one angle; for A = C each unordered
    pair once.

    Shapes: → AngleDistribution(angle [bins] °, density [bins] 1/°, count, mean °)

    >>> from ase import Atoms
    >>> water = Atoms("OH2", [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    >>> d = bond_angle_distribution([water], ("H", "O", "H"), 1.2)
    >>> d.count, round(d.mean, 1)
    (1, 104.5)
    """
    a, b, c = triplet
    what = f"{a}-{b}-{c}"
    cut_a, cut_c = (cutoffs, cutoffs) if np.isscalar(cutoffs) else cutoffs
    angles = []
    for atoms in frames:
        in_a, in_b, in_c = (species_mask(atoms, s, what) for s in (a, b, c))
        src, dst, vectors = _edges(atoms, max(cut_a, cut_c))
        length = np.linalg.norm(vectors, axis=1)
        edge_a = np.flatnonzero(in_b[dst] & in_a[src] & (length < cut_a))
        edge_c = np.flatnonzero(in_b[dst] & in_c[src] & (length < cut_c))
        first, second = _pairs_at_same_centre(edge_a, edge_c, dst, len(atoms))
        first, second = first[first != second], second[first != second]
        if a == c:  # one angle per unordered pair of neighbours
            pairs = np.unique(np.sort(np.stack([first, second], 1), axis=1), axis=0)
            first, second = pairs[:, 0], pairs[:, 1]
        cosine = (vectors[first] * vectors[second]).sum(1) / (length[first] * length[second])
        angles.append(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
    angles = np.concatenate(angles)
    edges = np.linspace(0.0, 180.0, bins + 1)
    counts = np.histogram(angles, bins=edges)[0].astype(float)
    density = counts / (counts.sum() * (edges[1] - edges[0])) if len(angles) else counts
    mean = float(angles.mean()) if len(angles) else float("nan")
    return AngleDistribution(0.5 * (edges[1:] + edges[:-1]), density, len(angles), mean)


def _pairs_at_same_centre(
    edge_a: np.ndarray, edge_c: np.ndarray, dst: np.ndarray, n_atoms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every (a, c) of an edge in ``edge_a`` and one in ``edge_c`` with the same centre
    ``dst``, without a Python loop over atoms.

    Shapes: edge_a: [n_a], edge_c: [n_c] → (first [n_pairs], second [n_pairs]) edge indices
    """
    edge_c = edge_c[np.argsort(dst[edge_c], kind="stable")]  # grouped by centre
    per_centre = np.bincount(dst[edge_c], minlength=n_atoms)  # C edges of each centre
    start = np.cumsum(per_centre) - per_centre  # where each centre's C edges begin
    repeats = per_centre[dst[edge_a]]  # partners of each A edge
    first = np.repeat(edge_a, repeats)
    offset = np.arange(repeats.sum()) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    second = edge_c[np.repeat(start[dst[edge_a]], repeats) + offset]
    return first, second


def distribution_distance(
    x_a: np.ndarray, f_a: np.ndarray, x_b: np.ndarray, f_b: np.ndarray
) -> float:
    r"""How far apart two curves of one distribution are (two runs' g(r) or angle densities):
    the integrated absolute difference relative to their mean area,

        d = ∫ |f_a − f_b| dx / ∫ ½ (f_a + f_b) dx,

    over the range both cover (``f_b`` interpolated linearly onto ``x_a``, the evenly spaced
    bin centres of ``f_a``). 0 for equal curves, 2 for curves that never overlap; for two
    densities of unit area (angle distributions) it is ∫ |p_a − p_b| dx. NaN where both curves
    are zero.

    Shapes: x_a, f_a: [bins_a], x_b, f_b: [bins_b] → float

    >>> x = np.linspace(0.5, 179.5, 180)
    >>> p = np.exp(-0.5 * ((x - 100) / 5) ** 2)
    >>> distribution_distance(x, p, x, p), round(distribution_distance(x, p, x, np.roll(p, 60)), 6)
    (0.0, 2.0)
    """
    x_a, f_a, x_b, f_b = (np.asarray(v, dtype=float) for v in (x_a, f_a, x_b, f_b))
    inside = (x_a >= x_b[0] - 1e-9) & (x_a <= x_b[-1] + 1e-9)
    a, b = f_a[inside], np.interp(x_a[inside], x_b, f_b)
    area = 0.5 * (a + b).sum()
    return float(np.abs(a - b).sum() / area) if area > 0 else float("nan")


def sampling_distance(
    p_a: np.ndarray, n_a: int, p_b: np.ndarray, n_b: int, draws: int = 200, seed: int = 0
) -> float:
    """The :func:`distribution_distance` that two histograms of ``n_a`` and ``n_b`` samples of
    one distribution — their pooled histogram — show on average (``draws`` multinomial
    draws): the level below which a distance of histograms this small says nothing.

    Shapes: p_a, p_b: [bins] densities on the same evenly spaced bins → float

    >>> p = np.full(18, 1 / 180)  # 10° bins of a uniform density
    >>> sampling_distance(p, 100_000, p, 100_000) < 0.02 < sampling_distance(p, 50, p, 50)
    True
    """
    p_a, p_b = np.asarray(p_a, dtype=float), np.asarray(p_b, dtype=float)
    pooled = n_a * p_a / p_a.sum() + n_b * p_b / p_b.sum()
    pooled /= pooled.sum()
    rng = np.random.default_rng(seed)
    a = rng.multinomial(n_a, pooled, size=draws) / n_a
    b = rng.multinomial(n_b, pooled, size=draws) / n_b
    return float(np.abs(a - b).sum(1).mean())
