"""Point-group detection: time per molecule, euclidnn vs pymatgen's PointGroupAnalyzer.

Same molecules as the acceptance table (tests/symmetry/symmetry_molecules.py), each rotated
and permuted (no noise: with 0.01 Å noise pymatgen's defaults give Cs for NH3 and CH4 and
generate tens of thousands of matrices for C20); best of ``--repeats`` calls each. pymatgen is
optional (a test-time reference only): without it only our column is printed.

Run: python bench/point_group.py [--repeats 5]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "symmetry"))
from machine import header  # noqa: E402
from symmetry_molecules import table  # noqa: E402

from euclidnn.symmetry import point_group  # noqa: E402


def best_time(function, argument, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(header(), flush=True)
    try:
        from pymatgen.core import Molecule
        from pymatgen.symmetry.analyzer import PointGroupAnalyzer
    except ImportError:
        PointGroupAnalyzer = None
    rng = np.random.default_rng(0)
    print(f"{'molecule':22s} {'atoms':>5s} {'ours':>6s} {'ms':>8s} {'pymatgen':>9s} {'ms':>8s}")
    for label, atoms, _, _ in table():
        q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        order = rng.permutation(len(atoms))
        positions = atoms.positions[order] @ q.T
        moved = Atoms(atoms.numbers[order], positions)
        ours = point_group(moved).name
        ours_ms = 1e3 * best_time(point_group, moved, args.repeats)
        theirs, theirs_ms = "-", float("nan")
        if PointGroupAnalyzer is not None:
            molecule = Molecule(moved.get_chemical_symbols(), moved.positions)
            theirs = str(PointGroupAnalyzer(molecule).sch_symbol)
            theirs_ms = 1e3 * best_time(
                lambda m: PointGroupAnalyzer(m).get_pointgroup(), molecule, args.repeats
            )
        print(
            f"{label:22s} {len(atoms):5d} {ours:>6s} {ours_ms:8.2f} {theirs:>9s} {theirs_ms:8.2f}"
        )


if __name__ == "__main__":
    main()
