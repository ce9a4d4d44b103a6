r"""Point group of a molecule: every O(3) element that maps the atoms onto atoms of the same element.

Algorithm (exhaustive, no axis guessing):

1. Centre on the centre of mass c (every element fixes it).
2. Pick two non-collinear reference atoms a₁, a₂ (from the rarest shells: same element, same
   distance from c). Any symmetry element maps them to a pair b₁, b₂ with the same elements,
   radii and separation; each such pair fixes R up to the handedness, giving two candidates
   R = F_b diag(1, 1, ±1) F_aᵀ (F the orthonormal frame of a pair).
3. Keep a candidate if each atom i has a partner π(i) of its element with
   |R (x_i − c) − (x_π(i) − c)| small; refit R to all atoms (orthogonal Procrustes with the
   determinant fixed) and accept it if every atom is then within ``tolerance``.
4. The accepted elements must be closed under products (checked on the permutations); if
   they are not, the tolerance was inconsistent and detection reruns with a smaller one, so a
   noisy input degrades to a subgroup, never to a wrong supergroup.
5. Make the group exact: average the positions over their orbits,
   x̄_i = (1/|G|) Σ_g R_gᵀ x_π_g(i), refit every R_g to x̄, and repeat, so that the returned
   matrices form a group to ~1e-15 and leave the symmetrized positions invariant.

Linear molecules (all atoms on a line within ``tolerance``) are ``Cinfv`` or ``Dinfh`` and a
single atom is ``Kh``; a finite subgroup stands in for these infinite groups (C16v, D16h and
Oh respectively, which share the invariants of the infinite group up to l = 15, 15 and 3).
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_masses

from euclidnn.symmetry.groups import Symmetry, point_group_operations, schoenflies_name

__all__ = ["DEFAULT_TOLERANCE", "numbers_and_positions", "point_group", "symmetrized_positions"]

#: Å. Matches geometries written with 4–5 decimals, DFT/xTB optima and 0.01 Å noise; atoms
#: that move by more than this under an element break it.
DEFAULT_TOLERANCE = 0.1
_LINEAR_ORDER = 16  # the finite C_nv / D_nh standing in for Cinfv / Dinfh


def numbers_and_positions(structure) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers [n] and positions [n, 3] Å of a ``Structure``, an ``ase.Atoms`` or a
    ``(numbers, positions)`` pair."""
    if hasattr(structure, "get_positions"):  # ase.Atoms
        numbers, positions = structure.get_atomic_numbers(), structure.get_positions()
    elif hasattr(structure, "numbers") and hasattr(structure, "positions"):
        numbers, positions = structure.numbers, structure.positions
    elif isinstance(structure, tuple) and len(structure) == 2:
        numbers, positions = structure
    else:
        raise ValueError(
            f"structure: expected a Structure, ase.Atoms or (numbers, positions), got {type(structure).__name__}"
        )
    numbers = np.asarray(numbers, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape != (len(numbers), 3):
        raise ValueError(
            f"structure.positions: expected shape [{len(numbers)}, 3], got {list(positions.shape)}"
        )
    if len(numbers) == 0:
        raise ValueError("structure: has no atoms")
    return numbers, positions


def _match(images: np.ndarray, x: np.ndarray, numbers: np.ndarray):
    """For each candidate, the nearest same-element atom of every image and its distance.

    Shapes: images: [b, n, 3], x: [n, 3] → permutations [b, n], distances [b, n]
    """
    squared = (images**2).sum(-1)[:, :, None] + (x**2).sum(-1) - 2 * images @ x.T
    distance = np.sqrt(np.clip(squared, 0, None))
    distance = np.where(numbers[:, None] == numbers[None, :], distance, np.inf)
    permutation = distance.argmin(axis=-1)
    partner_numbers = numbers[permutation]
    gap = np.linalg.norm(images - x[permutation], axis=-1)  # exact, not from the expansion
    return permutation, np.where(partner_numbers == numbers, gap, np.inf)


def _procrustes(x: np.ndarray, permutations: np.ndarray, dets: np.ndarray) -> np.ndarray:
    """R_b of determinant ``dets[b]`` minimising Σ_i |R_b x_i − x_π_b(i)|².

    Shapes: x: [n, 3], permutations: [b, n], dets: [b] → [b, 3, 3]
    """
    h = np.einsum("bna,nc->bac", x[permutations], x)  # Σ_i y_i x_iᵀ
    u, _, vt = np.linalg.svd(h)
    d = dets * np.sign(np.linalg.det(u @ vt))
    u = u.copy()
    u[:, :, 2] *= d[:, None]
    return u @ vt


def _is_permutation(p: np.ndarray) -> np.ndarray:
    return np.array([len(np.unique(row)) == len(row) for row in p], dtype=bool)


def _frame(a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    """Orthonormal columns (â₁, part of a₂ ⊥ â₁, their cross product). Shapes: [..., 3, 3]."""
    u1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    v = a2 - (a2 * u1).sum(-1, keepdims=True) * u1
    u2 = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.stack([u1, u2, np.cross(u1, u2)], axis=-1)


def _reference_pair(x: np.ndarray, numbers: np.ndarray, tolerance: float) -> tuple[int, int]:
    """Two non-collinear atoms whose possible images are fewest."""
    radius = np.linalg.norm(x, axis=1)
    same_shell = (numbers[:, None] == numbers[None, :]) & (
        np.abs(radius[:, None] - radius[None, :]) <= 2 * tolerance
    )
    shell_size = np.where(radius > 2 * tolerance, same_shell.sum(1), len(x) + 1)
    a1 = int(np.lexsort((-radius, shell_size))[0])
    offaxis = np.linalg.norm(np.cross(x, x[a1] / radius[a1]), axis=1)
    usable = offaxis >= 0.3 * offaxis.max()
    distance = np.linalg.norm(x[:, None] - x[None, :], axis=-1)
    images1 = np.flatnonzero(same_shell[a1])
    # candidates[a2] = Σ_{b1} #{b2 : same shell as a2, |b1 − b2| = |a1 − a2|}
    close = np.abs(distance[images1][None, :, :] - distance[a1][:, None, None]) <= 2 * tolerance
    candidates = (close & same_shell[:, None, :]).sum((1, 2))
    return a1, int(np.argmin(np.where(usable, candidates, np.iinfo(np.int64).max)))


def _candidate_elements(x, numbers, tolerance) -> list[tuple[tuple, np.ndarray]]:
    """All (permutation, R) pairs that map the atoms onto themselves within ``tolerance``."""
    a1, a2 = _reference_pair(x, numbers, tolerance)
    radius = np.linalg.norm(x, axis=1)
    distance = np.linalg.norm(x[:, None] - x[None, :], axis=-1)
    images1 = np.flatnonzero(
        (numbers == numbers[a1]) & (np.abs(radius - radius[a1]) <= 2 * tolerance)
    )
    images2 = np.flatnonzero(
        (numbers == numbers[a2]) & (np.abs(radius - radius[a2]) <= 2 * tolerance)
    )
    pairs = [
        (b1, b2)
        for b1 in images1
        for b2 in images2
        if b1 != b2 and abs(distance[b1, b2] - distance[a1, a2]) <= 2 * tolerance
    ]
    b1, b2 = np.array(pairs).T
    frame_b = _frame(x[b1], x[b2])
    frame_a = _frame(x[a1], x[a2])
    flip = np.diag([1.0, 1.0, -1.0])
    rotations = np.concatenate([frame_b @ frame_a.T, frame_b @ flip @ frame_a.T])
    dets = np.concatenate([np.ones(len(pairs)), -np.ones(len(pairs))])
    accepted: dict[tuple, np.ndarray] = {}
    chunk = max(1, 4_000_000 // len(x) ** 2)  # bounded memory: [chunk, n, n] distances
    for start in range(0, len(rotations), chunk):
        R, d = rotations[start : start + chunk], dets[start : start + chunk]
        permutation, gap = _match(np.einsum("bij,nj->bni", R, x), x, numbers)
        keep = (gap.max(1) <= 3 * tolerance) & _is_permutation(permutation)
        if not keep.any():
            continue
        R = _procrustes(x, permutation[keep], d[keep])  # refit to all atoms, then check strictly
        permutation, gap = _match(np.einsum("bij,nj->bni", R, x), x, numbers)
        for p, g, r, det in zip(permutation, gap, R, d[keep]):
            if g.max() <= tolerance and len(np.unique(p)) == len(p):
                accepted[(det > 0, *p.tolist())] = r
    return list(accepted.items())


def _is_closed(keys: list[tuple]) -> bool:
    """Whether the (det > 0, permutation) pairs are closed under composition π_gh = π_g ∘ π_h."""
    proper = np.array([key[0] for key in keys])
    permutations = np.array([key[1:] for key in keys], dtype=np.int64)
    composed = permutations[:, permutations]  # [g, h, n]: π_g[π_h[i]]
    signs = proper[:, None] == proper[None, :]  # det(gh) > 0
    known = {(p, row.tobytes()) for p, row in zip(proper, permutations)}
    flat = composed.reshape(-1, permutations.shape[1])
    return all((p, row.tobytes()) in known for p, row in zip(signs.reshape(-1), flat))


def symmetrized_positions(x: np.ndarray, operations: np.ndarray, permutations: np.ndarray):
    """Orbit average x̄_i = (1/|G|) Σ_g R_gᵀ x_π_g(i) (positions relative to the fixed point).

    Shapes: x: [n, 3], operations: [order, 3, 3], permutations: [order, n] → [n, 3]
    """
    return np.einsum("gba,gib->ia", operations, x[permutations]) / len(operations)


def _exact(x, permutations, dets, iterations: int = 4):
    """Alternate orbit averaging and refitting until the elements form an exact group."""
    operations = _procrustes(x, permutations, dets)
    for _ in range(iterations):
        x = symmetrized_positions(x, operations, permutations)
        operations = _procrustes(x, permutations, dets)
    return operations


def _linear_stand_in(centrosymmetric: bool) -> np.ndarray:
    """C16v (or D16h) about z, built directly: rotations, then the vertical mirrors (and their
    products with σh)."""
    angles = 2 * np.pi * np.arange(_LINEAR_ORDER) / _LINEAR_ORDER
    cos, sin, zero, one = (
        np.cos(angles),
        np.sin(angles),
        np.zeros_like(angles),
        np.ones_like(angles),
    )
    rotations = np.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    ops = np.concatenate([rotations, rotations @ np.diag([1.0, -1.0, 1.0])])
    if centrosymmetric:
        ops = np.concatenate([ops, np.diag([1.0, 1.0, -1.0]) @ ops])
    return ops


def _axial_group(x, numbers, tolerance, center) -> Symmetry | None:
    """Cinfv / Dinfh / Kh (single atom), or None if the molecule is not linear."""
    if len(x) == 1:
        ops = point_group_operations("Oh")
        return Symmetry(
            "Kh",
            ops,
            np.zeros((len(ops), 1), np.int64),
            center,
            np.zeros((len(ops), 3)),
            None,
            tolerance,
        )
    axis = np.linalg.svd(x)[2][0]
    if np.linalg.norm(np.cross(x, axis), axis=1).max() > tolerance:
        return None
    # a right-handed frame whose third column is the molecular axis
    frame = np.linalg.svd(np.outer(axis, axis))[0][:, [1, 2, 0]]  # U[:, 0] is the axis
    frame[:, 2] *= np.linalg.det(frame)
    _, gap = _match(-x[None], x, numbers)
    centrosymmetric = gap.max() <= tolerance
    name = "Dinfh" if centrosymmetric else "Cinfv"
    ops = frame @ _linear_stand_in(centrosymmetric) @ frame.T
    permutations, _ = _match(np.einsum("gij,nj->gni", ops, x), x, numbers)
    return Symmetry(name, ops, permutations, center, np.zeros((len(ops), 3)), None, tolerance)


def point_group(structure, tolerance: float = DEFAULT_TOLERANCE) -> Symmetry:
    r"""The point group of a molecule (cell and pbc are ignored).

    Args:
        structure: a :class:`~euclidnn.data.Structure`, an ``ase.Atoms`` or ``(numbers, positions)``.
        tolerance: Å; an element is kept if it moves every atom to within this distance of an
            atom of the same element (after refitting it to all atoms). The default 0.1 Å
            accepts geometries from files (4–5 decimals), DFT/xTB optima and 0.01 Å noise.

    Returns:
        :class:`Symmetry` with the Schoenflies name, the elements R_g in the input's frame
        (about the centre of mass c) and the atom permutation of each.

    Shapes: positions: [n_atoms, 3] → operations: [order, 3, 3], permutations: [order, n_atoms]

    >>> from ase.build import molecule
    >>> group = point_group(molecule("H2O"))
    >>> group.name, group.order, group.permutations.tolist()[1]
    ('C2v', 4, [0, 2, 1])
    >>> point_group(molecule("CO2")).name
    'Dinfh'
    """
    numbers, positions = numbers_and_positions(structure)
    if not tolerance > 0:
        raise ValueError(f"tolerance: must be positive, got {tolerance}")
    masses = atomic_masses[numbers]
    center = masses @ positions / masses.sum()
    x = positions - center
    axial = _axial_group(x, numbers, tolerance, center)
    if axial is not None:
        return axial
    trial = tolerance
    for _ in range(12):  # an inconsistent tolerance shrinks until the elements close
        elements = _candidate_elements(x, numbers, trial)
        keys = [key for key, _ in elements]
        if _is_closed(keys):
            break
        trial *= 0.7
    else:
        keys = [(True, *range(len(x)))]
    permutations = np.array([key[1:] for key in keys], dtype=np.int64)
    dets = np.array([1.0 if key[0] else -1.0 for key in keys])
    order = np.lexsort((np.arange(len(keys)), (permutations != np.arange(len(x))).any(1), dets < 0))
    permutations, dets = permutations[order], dets[order]  # identity first, proper before improper
    operations = _exact(x, permutations, dets)
    return Symmetry(
        schoenflies_name(operations),
        operations,
        permutations,
        center,
        np.zeros((len(operations), 3)),
        None,
        trial,
    )
