"""The selection keeps to both σ bounds, to the thinning in time, and to the count."""

import numpy as np
import pytest

from euclidnn.learn import candidates, select_frames


def test_both_bounds_are_kept():
    sigmas = [0.01, 0.05, 0.051, 0.2, 0.5, 0.5001, 3.0]
    assert candidates(sigmas, 0.05, 0.5).tolist() == [2, 3, 4]
    chosen = select_frames(sigmas, range(0, 70, 10), 0.05, 0.5, max_frames=10)
    assert chosen == [2, 3, 4]


def test_thinning_takes_the_largest_sigma_first_and_spaces_frames_in_time():
    rng = np.random.default_rng(0)
    sigmas = rng.uniform(0.0, 1.0, 400)
    steps = np.arange(400) * 5
    trajectories = np.repeat([0, 1], 200)
    chosen = select_frames(sigmas, steps, 0.1, 0.8, 12, min_spacing=50, trajectories=trajectories)
    assert len(chosen) == 12
    assert all(0.1 < sigmas[c] <= 0.8 for c in chosen)
    for a in chosen:
        for b in chosen:
            if a < b and trajectories[a] == trajectories[b]:
                assert steps[b] - steps[a] >= 50
    # the frame with the largest σ inside the bounds is always taken
    inside = np.flatnonzero((sigmas > 0.1) & (sigmas <= 0.8))
    assert inside[np.argmax(sigmas[inside])] in chosen


def test_frames_of_other_trajectories_are_not_too_close():
    # the same step in two trajectories is not a neighbour
    assert select_frames([0.3, 0.2], [100, 100], 0.1, 1.0, 5, 50, trajectories=[0, 1]) == [0, 1]
    assert select_frames([0.3, 0.2], [100, 100], 0.1, 1.0, 5, 50) == [0]


def test_nothing_to_take_and_bad_bounds():
    assert select_frames([0.01, 2.0], [0, 10], 0.05, 0.5, 5) == []
    assert select_frames([0.3], [0], 0.05, 0.5, 0) == []
    with pytest.raises(ValueError, match="sigma_low"):
        select_frames([0.3], [0], 0.5, 0.5, 1)
