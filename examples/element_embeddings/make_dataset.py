"""Make the many-element GFN2-xTB set (``load_dataset("many-elements")``) with `euclidnn label`.

Start geometries: ASE's g2 molecules (closed shell, ≤ 10 atoms, no single atoms) and
element-substituted variants (Li/Na → K, Rb; Be → Mg, Ca, Sr; B/Al → Ga, In; C/Si → Ge, Sn;
N/P → As, Sb; O/S → Se, Te; Cl → Br, I; bonds to a substituted atom rescaled by the ratio of
covalent radii), each relaxed with GFN2-xTB (BFGS, fmax 0.05 eV/Å, ≤ 300 steps). Then, for
each, `euclidnn label START.xyz -n FRAMES` (Langevin MD at 500 K, 200 equilibration steps,
every 10th step) and all frames concatenated and gzipped. Resumable: rerun to continue.

Run: OMP_NUM_THREADS=1 nice -n 19 python examples/element_embeddings/make_dataset.py \
        --frames 20 --work runs/many-elements --out many-elements-gfn2xtb.xyz.gz
"""

import argparse
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.collections import g2
from ase.data import atomic_numbers, covalent_radii

#: (start, substitution): a g2 name or one of CUSTOM, and which element replaces which
SUBSTITUTED = [
    ("LiH", {"Li": "K"}), ("LiH", {"Li": "Rb"}), ("LiF", {"Li": "K"}), ("LiF", {"Li": "Na"}),
    ("NaCl", {"Na": "K"}), ("NaCl", {"Na": "Rb"}), ("LiF", {"Li": "Rb"}),
    ("BeH2", {}), ("BeH2", {"Be": "Mg"}), ("BeH2", {"Be": "Ca"}), ("BeH2", {"Be": "Sr"}),
    ("BeCl2", {}), ("BeCl2", {"Be": "Mg"}), ("BeCl2", {"Be": "Ca"}), ("BeF2", {"Be": "Mg"}),
    ("BF3", {"B": "Ga"}), ("BCl3", {"B": "Ga"}), ("AlCl3", {"Al": "In"}), ("BH3", {}),
    ("BH3", {"B": "Al"}), ("BH3", {"B": "Ga"}),
    ("CH4", {"C": "Ge"}), ("CH4", {"C": "Sn"}), ("Si2H6", {"Si": "Ge"}), ("CH3Cl", {"C": "Ge"}),
    ("CH3SiH3", {"Si": "Sn"}), ("SiCl4", {"Si": "Ge"}),
    ("NH3", {"N": "As"}), ("NH3", {"N": "Sb"}), ("PF3", {"P": "As"}), ("H3CNH2", {"N": "P"}),
    ("H3CNH2", {"N": "As"}),
    ("H2O", {"O": "Se"}), ("H2O", {"O": "Te"}), ("CH3SH", {"S": "Se"}), ("CS2", {"S": "Se"}),
    ("CH3SCH3", {"S": "Se"}), ("OCS", {"S": "Se"}),
    ("HCl", {"Cl": "Br"}), ("HCl", {"Cl": "I"}), ("CH3Cl", {"Cl": "Br"}), ("CH3Cl", {"Cl": "I"}),
    ("Cl2", {"Cl": "Br"}), ("ClF", {"Cl": "Br"}), ("ClF", {"Cl": "I"}), ("CCl4", {"Cl": "Br"}),
    ("H2CCl2", {"Cl": "Br"}), ("CH3CH2Cl", {"Cl": "I"}),
]  # fmt: skip
CUSTOM = {  # linear XH2 / XCl2 and planar BH3, bond lengths from covalent radii
    "BeH2": Atoms("BeH2", [[0, 0, 0], [1.33, 0, 0], [-1.33, 0, 0]]),
    "BeCl2": Atoms("BeCl2", [[0, 0, 0], [1.80, 0, 0], [-1.80, 0, 0]]),
    "BeF2": Atoms("BeF2", [[0, 0, 0], [1.40, 0, 0], [-1.40, 0, 0]]),
    "BH3": Atoms("BH3", [[0, 0, 0], [1.19, 0, 0], [-0.595, 1.03, 0], [-0.595, -1.03, 0]]),
}


def g2_names() -> list[str]:
    names = []
    for name in g2.names:
        atoms = molecule(name)
        closed = not atoms.get_initial_magnetic_moments().any() and atoms.numbers.sum() % 2 == 0
        if closed and 2 <= len(atoms) <= 10:
            names.append(name)
    return names


def substitute(atoms: Atoms, mapping: dict[str, str]) -> Atoms:
    """Replace elements; each bond to a replaced atom scaled by the covalent-radius ratio
    (the atom with fewer bonds moves)."""
    atoms = atoms.copy()
    old = atoms.numbers.copy()
    new = np.array([atomic_numbers[mapping.get(s, s)] for s in atoms.get_chemical_symbols()])
    distance = atoms.get_all_distances()
    bonded = distance < 1.25 * (covalent_radii[old][:, None] + covalent_radii[old][None])
    np.fill_diagonal(bonded, False)
    degree = bonded.sum(1)
    positions = atoms.positions.copy()
    for i, j in zip(*np.nonzero(np.triu(bonded))):
        if old[i] == new[i] and old[j] == new[j]:
            continue
        scale = (covalent_radii[new[i]] + covalent_radii[new[j]]) / (
            covalent_radii[old[i]] + covalent_radii[old[j]]
        )
        mover, anchor = (i, j) if degree[i] <= degree[j] else (j, i)
        positions[mover] = positions[anchor] + (positions[mover] - positions[anchor]) * scale
        if degree[mover] > 1:  # a centre: its other neighbours follow it
            positions[bonded[mover] & (np.arange(len(atoms)) != anchor)] += (
                positions[mover] - atoms.positions[mover]
            )
    atoms.numbers, atoms.positions = new, positions
    return atoms


def relax(atoms: Atoms) -> Atoms:
    from ase.optimize import BFGS
    from tblite.ase import TBLite

    atoms = atoms.copy()
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=300)
    atoms.calc = None
    return atoms


def starts() -> dict[str, Atoms]:
    result = {name: molecule(name) for name in g2_names()}
    for base, mapping in SUBSTITUTED:
        start = CUSTOM[base] if base in CUSTOM else molecule(base)
        name = base + "".join(f"_{a}-{b}" for a, b in mapping.items())
        result[name] = substitute(start, mapping)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20, help="frames per molecule")
    parser.add_argument("--work", default="runs/many-elements")
    parser.add_argument("--out", default="many-elements-gfn2xtb.xyz.gz")
    args = parser.parse_args()
    work = Path(args.work)
    (work / "start").mkdir(parents=True, exist_ok=True)
    (work / "frames").mkdir(exist_ok=True)
    frames, failed = [], []
    for name, atoms in starts().items():
        start, output = work / "start" / f"{name}.xyz", work / "frames" / f"{name}.xyz"
        try:
            if not start.is_file():
                ase.io.write(start, relax(atoms), format="extxyz")
            command = [sys.executable, "-m", "euclidnn", "label", str(start), "-o", str(output)]
            command += ["-n", str(args.frames), "--method", "gfn2-xtb", "--temperature", "500"]
            command += ["--interval", "10", "--equilibration", "200", "--seed", "0", "--quiet"]
            subprocess.run(command, check=True, capture_output=True, text=True)
        except Exception as error:  # xTB failures (SCF, a molecule that falls apart): skip
            failed.append(f"{name}: {getattr(error, 'stderr', '') or error}".strip()[:200])
            continue
        for frame in ase.io.read(output, index=":"):
            frame.info["molecule"] = name
            frames.append(frame)
        print(f"{name}: {output}", flush=True)
    elements = sorted({s for f in frames for s in f.get_chemical_symbols()}, key=atomic_numbers.get)
    print(f"{len(frames)} frames, {len(elements)} elements: {' '.join(elements)}")
    print("failed: " + ("; ".join(failed) or "none"))
    plain = work / "many-elements-gfn2xtb.xyz"
    ase.io.write(plain, frames, format="extxyz")
    with open(plain, "rb") as source, gzip.open(f"{args.out}.tmp", "wb", compresslevel=9) as target:
        shutil.copyfileobj(source, target)
    os.replace(f"{args.out}.tmp", args.out)


if __name__ == "__main__":
    main()
