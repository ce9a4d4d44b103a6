"""The shipped many-element GFN2-xTB set: its recorded size, ≥ 20 main-group elements, sane
labels, and labels that tblite reproduces."""

import numpy as np
import pytest

from euclidnn.data import load_dataset
from euclidnn.data.datasets import dataset_info
from euclidnn.data.label import Level, make_labeller


@pytest.fixture(scope="module")
def structures():
    return load_dataset("many-elements")


def test_size_elements_and_labels(structures):
    info = dataset_info("many-elements")
    assert len(structures) == info.num_frames == 3080
    elements = {int(z) for s in structures for z in s.numbers}
    assert len(elements) >= 20 and {19, 20, 31, 32, 33, 34, 35, 50, 53} <= elements
    assert info.path.stat().st_size < 3_000_000  # shipped compressed, a few MB at most
    for s in structures:
        assert np.isfinite(s.energy) and np.all(np.isfinite(s.forces))
        assert np.abs(s.forces.sum(axis=0)).max() < 1e-2  # a free molecule: no net force
    # MD at 500 K, not relaxed copies: forces of a few eV/Å at most, never zero everywhere
    largest = np.array([np.abs(s.forces).max() for s in structures])
    assert np.median(largest) > 0.2 and largest.max() < 50


def test_labels_reproduce(structures):
    pytest.importorskip("tblite")
    labeller = make_labeller(Level("gfn2-xtb"))
    for index in (0, 2000, len(structures) - 1):  # a g2 molecule and two substituted ones
        s = structures[index]
        energy, forces = labeller(s.to_ase())
        assert abs(energy - s.energy) < 1e-5
        assert np.allclose(forces, s.forces, atol=1e-3)
