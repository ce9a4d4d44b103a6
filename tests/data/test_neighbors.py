import itertools

import numpy as np
import pytest

from euclidnn.data import neighbor_list


def brute_force(positions, cell, pbc, r_max):
    """All (src, dst, shift) with |r_src - r_dst + shift @ cell| < r_max, by a numpy loop."""
    ranges = []
    for axis in range(3):
        if pbc[axis]:
            spacing = 1.0 / np.linalg.norm(np.linalg.pinv(cell)[:, axis])  # plane spacing
            k = int(np.ceil(r_max / spacing)) + 1
            ranges.append(range(-k, k + 1))
        else:
            ranges.append([0])
    edges = set()
    for shift in itertools.product(*ranges):
        offset = np.array(shift) @ cell if any(pbc) else np.zeros(3)
        for src in range(len(positions)):
            for dst in range(len(positions)):
                if src == dst and not any(shift):
                    continue
                if np.linalg.norm(positions[src] - positions[dst] + offset) < r_max:
                    edges.add((src, dst, *shift))
    return edges


def as_set(src, dst, shift):
    return set(zip(src.tolist(), dst.tolist(), *shift.T.tolist()))


@pytest.mark.parametrize(
    "length, r_max, pbc",
    [
        (1.5, 4.0, (True, True, True)),  # an atom sees many images of itself
        (2.0, 5.0, (True, True, True)),
        (8.0, 3.0, (True, True, True)),
        (2.5, 4.0, (True, False, True)),  # slab
        (3.0, 3.5, (False, False, True)),  # wire
    ],
)
def test_periodic_matches_brute_force(length, r_max, pbc):
    rng = np.random.default_rng(int(length * 10))
    cell = length * (np.eye(3) + 0.3 * rng.normal(size=(3, 3)))  # triclinic
    positions = rng.uniform(-0.2, 1.2, size=(5, 3)) @ cell  # some outside the cell
    result = neighbor_list(positions, cell, np.array(pbc), r_max)
    expected = brute_force(positions, cell, pbc, r_max)
    assert len(result[0]) == len(expected)
    assert as_set(*result) == expected
    src, dst, shift = result
    assert src.dtype == dst.dtype == shift.dtype == np.int64


def test_molecule_matches_brute_force():
    rng = np.random.default_rng(1)
    positions = rng.uniform(0, 6, size=(20, 3))
    result = neighbor_list(positions, None, False, 2.5)
    assert as_set(*result) == brute_force(positions, np.zeros((3, 3)), (False,) * 3, 2.5)
    assert (result[2] == 0).all()


def test_edges_are_full_and_follow_the_convention():
    rng = np.random.default_rng(2)
    cell = 3.0 * np.eye(3) + 0.5 * rng.normal(size=(3, 3))
    positions = rng.uniform(size=(4, 3)) @ cell
    src, dst, shift = neighbor_list(positions, cell, True, 3.5)
    vectors = positions[src] - positions[dst] + shift @ cell
    assert (np.linalg.norm(vectors, axis=1) < 3.5).all()
    # every edge has its reverse
    assert as_set(src, dst, shift) == as_set(dst, src, -shift)
    # no self edge without a shift
    assert not ((src == dst) & (shift == 0).all(axis=1)).any()


def test_non_periodic_ignores_cell_and_zero_cell_vector_ok():
    positions = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.9]])
    # cell given but not periodic: only the direct pair
    src, _, _ = neighbor_list(positions, 3.0 * np.eye(3), False, 1.0)
    assert len(src) == 0
    # slab with a zero third lattice vector
    cell = np.diag([3.0, 3.0, 0.0])
    src, dst, shift = neighbor_list(positions, cell, [True, True, False], 3.05)
    assert as_set(src, dst, shift) == brute_force(positions, cell, (True, True, False), 3.05)


def test_bad_arguments():
    with pytest.raises(ValueError, match="positions"):
        neighbor_list(np.zeros((3, 2)), None, False, 1.0)
    with pytest.raises(ValueError, match="r_max"):
        neighbor_list(np.zeros((3, 3)), None, False, 0.0)
    src, dst, shift = neighbor_list(np.zeros((0, 3)), None, False, 1.0)
    assert src.shape == (0,) and shift.shape == (0, 3)


def test_skewed_cell_and_far_unwrapped_positions():
    cell = np.array([[1.2, 0.0, 0.0], [1.1, 0.6, 0.0], [0.4, 0.5, 1.3]])  # strongly sheared
    rng = np.random.default_rng(5)
    positions = rng.uniform(size=(3, 3)) @ cell
    reference = neighbor_list(positions, cell, True, 2.7)
    assert as_set(*reference) == brute_force(positions, cell, (True,) * 3, 2.7)
    # moving atom 1 by a lattice translation changes shifts but not the edge vectors
    moved = positions.copy()
    moved[1] += np.array([7, -4, 3]) @ cell
    src, dst, shift = neighbor_list(moved, cell, True, 2.7)
    vec = moved[src] - moved[dst] + shift @ cell
    rsrc, rdst, rshift = reference
    rvec = positions[rsrc] - positions[rdst] + rshift @ cell
    key = lambda s, d, v: sorted(zip(s.tolist(), d.tolist(), np.round(v, 9).tolist()))  # noqa: E731
    assert key(src, dst, vec) == key(rsrc, rdst, rvec)
