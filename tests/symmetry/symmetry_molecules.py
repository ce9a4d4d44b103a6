"""Test molecules with known point groups: ASE's g2/extra sets plus exact hand-built ones."""

import numpy as np
from ase import Atoms
from ase.build import molecule


def ferrocene(staggered: bool) -> Atoms:
    """Fe(C5H5)2, rings 3.32 Å apart: eclipsed D5h, staggered D5d."""
    positions, symbols = [[0.0, 0.0, 0.0]], ["Fe"]
    for side in (1, -1):
        twist = np.pi / 5 if (staggered and side < 0) else 0.0
        for k in range(5):
            angle = 2 * np.pi * k / 5 + twist
            for radius, symbol in ((1.22, "C"), (2.30, "H")):
                positions.append([radius * np.cos(angle), radius * np.sin(angle), 1.66 * side])
                symbols.append(symbol)
    return Atoms(symbols, positions)


def sulfur_hexafluoride() -> Atoms:
    """SF6, Oh: S–F 1.56 Å along ±x, ±y, ±z."""
    axes = np.concatenate([np.eye(3), -np.eye(3)]) * 1.56
    return Atoms("SF6", np.concatenate([np.zeros((1, 3)), axes]))


def c20() -> Atoms:
    """The C20 cage as a regular dodecahedron (Ih), bonds 1.45 Å."""
    phi = (1 + 5**0.5) / 2
    cube = [[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]
    rest = []
    for s in (-1, 1):
        for t in (-1, 1):
            rest += [[0, s / phi, t * phi], [s / phi, t * phi, 0], [s * phi, 0, t / phi]]
    return Atoms("C20", np.array(cube + rest) * 1.45 / (2 / phi))


def bromochlorofluoromethane() -> Atoms:
    """CHFClBr: a chiral tetrahedral carbon (C1)."""
    directions = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / 3**0.5
    bonds = np.array([1.09, 1.35, 1.77, 1.94])[:, None]
    return Atoms("CHFClBr", np.concatenate([np.zeros((1, 3)), directions * bonds]))


def table() -> list[tuple[str, Atoms, str, int]]:
    """(label, molecule, Schoenflies name, number of elements) for the acceptance table."""
    return [
        ("water", molecule("H2O"), "C2v", 4),
        ("ammonia", molecule("NH3"), "C3v", 6),
        ("methane", molecule("CH4"), "Td", 24),
        ("ethylene", molecule("C2H4"), "D2h", 8),
        ("allene", molecule("C3H4_D2d"), "D2d", 8),
        ("benzene", molecule("C6H6"), "D6h", 24),
        ("ferrocene eclipsed", ferrocene(False), "D5h", 20),
        ("ferrocene staggered", ferrocene(True), "D5d", 20),
        ("SF6", sulfur_hexafluoride(), "Oh", 48),
        ("C60", molecule("C60"), "Ih", 120),
        ("C20", c20(), "Ih", 120),
        ("CHFClBr", bromochlorofluoromethane(), "C1", 1),
        ("hydrogen peroxide", molecule("H2O2"), "C2", 2),
        ("ethanol", molecule("CH3CH2OH"), "Cs", 2),
        ("trans-butane", molecule("trans-butane"), "C2h", 4),
        ("ethane", molecule("C2H6"), "D3d", 12),
        ("cyclopropane", molecule("C3H6_D3h"), "D3h", 12),
        ("CO2", molecule("CO2"), "Dinfh", 64),
        ("acetylene", molecule("C2H2"), "Dinfh", 64),
        ("HCN", molecule("HCN"), "Cinfv", 32),
    ]
