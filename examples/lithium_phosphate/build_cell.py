"""A 52-atom Li4P2O7 cell (4 formula units) by random packing at 2.3 g/cm³: P2O7 units (two
corner-sharing PO4 tetrahedra) on an fcc-like set of sites with random orientations, then Li at
random where it is at least 1.85 Å from P and O and 2.3 Å from Li. The shipped
li4p2o7_52.xyz is this cell relaxed 25 FIRE steps with GFN1-xTB (see make_data.sh).

    python build_cell.py   # writes li4p2o7_random.xyz
"""

import numpy as np
from ase import Atoms
from ase.units import _amu
from scipy.spatial.transform import Rotation


def pyrophosphate():
    """P2O7: two PO4 tetrahedra sharing the bridging O (origin); P-Ob 1.61, P-Ot 1.52 Å, P-O-P 130°."""
    half = np.radians(65)
    symbols, positions = ["O"], [np.zeros(3)]
    for side in (1, -1):
        direction = np.array([side * np.sin(half), np.cos(half), 0.0])
        p = 1.61 * direction
        symbols.append("P")
        positions.append(p)
        # three terminal O: tetrahedral around P, one vertex pointing back to the bridge
        axis = -direction
        perp = np.cross(axis, [0, 0, 1.0])
        perp /= np.linalg.norm(perp)
        perp2 = np.cross(axis, perp)
        for k in range(3):
            phi = 2 * np.pi * k / 3 + (0 if side > 0 else np.pi / 3)
            v = -axis * np.cos(np.radians(180 - 109.47)) + np.sin(np.radians(109.47)) * (
                np.cos(phi) * perp + np.sin(phi) * perp2
            )
            symbols.append("O")
            positions.append(p + 1.52 * v / np.linalg.norm(v))
    return Atoms(symbols, positions)


def min_distance(cell_len, a, b):
    d = a[:, None, :] - b[None, :, :]
    d -= cell_len * np.round(d / cell_len)
    return np.sqrt((d**2).sum(-1)).min() if len(a) and len(b) else np.inf


def build(units=4, density=2.3, seed=0):
    rng = np.random.default_rng(seed)
    unit = pyrophosphate()
    mass = units * (unit.get_masses().sum() + 4 * 6.94)
    length = (mass * _amu * 1e3 / density * 1e24) ** (1 / 3)  # Å
    symbols, positions = [], np.zeros((0, 3))
    sites = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) + 0.25
    for _ in range(units):
        for _ in range(10000):
            rot = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
            new = (unit.positions - unit.positions.mean(0)) @ rot.T + sites[
                len(positions) // 9
            ] * length
            if min_distance(length, new, positions) > 2.4:
                break
        else:
            raise RuntimeError("no room for a P2O7 unit")
        symbols += unit.get_chemical_symbols()
        positions = np.vstack([positions, new])
    for _ in range(4 * units):
        for _ in range(100000):
            new = rng.uniform(0, length, (1, 3))
            li = positions[[s == "Li" for s in symbols]]
            other = positions[[s != "Li" for s in symbols]]
            if min_distance(length, new, other) > 1.85 and min_distance(length, new, li) > 2.3:
                break
        else:
            raise RuntimeError("no room for Li")
        symbols.append("Li")
        positions = np.vstack([positions, new])
    atoms = Atoms(symbols, positions, cell=[length] * 3, pbc=True)
    atoms.wrap()
    return atoms


if __name__ == "__main__":
    a = build()
    print(
        a.get_chemical_formula(),
        len(a),
        a.cell.lengths(),
        a.get_masses().sum() / a.get_volume() * 1.66054,
    )
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", a, 1.8)
    print("P-O bonds", sum(1 for x, y in zip(i, j) if a[x].symbol == "P" and a[y].symbol == "O"))
    a.write("li4p2o7_random.xyz")
