"""Starting geometries by name: the molecules shipped with euclidnn, ASE's g2 set, or a file.

The commands that take a structure (``label``, ``md``, ``serve``, ``analyze``, ``interpret``)
read it with :func:`load_molecule`, so each accepts the same names.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MOLECULES_DIR", "list_molecules", "load_molecule"]

#: The shipped starting geometries, one ``NAME.xyz`` each (RDKit ETKDG + MMFF94).
MOLECULES_DIR = Path(__file__).parent / "shipped" / "molecules"


def list_molecules() -> list[str]:
    """Names of the starting geometries shipped with euclidnn (besides ASE's g2 names).

    >>> "ethanol" in list_molecules()
    True
    """
    return sorted(p.stem for p in MOLECULES_DIR.glob("*.xyz"))


def load_molecule(name: str | os.PathLike):
    """Starting geometry as ``ase.Atoms``: an xyz/extxyz file path (its first frame), a shipped
    molecule name (:func:`list_molecules`; RDKit ETKDG + MMFF94 geometries), or an ASE g2 name
    (``"CH3CH2OH"``).

    Raises ``ValueError`` for a file that holds no structure and for an unknown name.

    >>> load_molecule("ethanol").get_chemical_formula()
    'C2H6O'
    """
    import ase.io
    from ase.build import molecule
    from ase.collections import g2

    path = Path(name)
    if path.suffix and path.is_file():
        try:
            return ase.io.read(path, index=0)
        except Exception as error:
            raise ValueError(f"{path}: frame 0: cannot read a structure: {error}") from error
    name = str(name)
    shipped = MOLECULES_DIR / f"{name}.xyz"
    if shipped.is_file():
        return ase.io.read(shipped, index=0)
    if name in g2.names:
        return molecule(name)
    raise ValueError(
        f"unknown molecule {name!r}: not a file, not one of {', '.join(list_molecules())}, "
        "and not an ASE g2 name"
    )
