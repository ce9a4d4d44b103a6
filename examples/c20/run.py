"""The seed's C20 study at the scale of one small machine, with one command:

    python examples/c20/run.py --out runs/c20            # ~15 min on 2 CPU cores
    python examples/c20/run.py --out runs/c20 --quick    # a smoke run, ~4 min

1. build the C20 cage (a dodecahedron, C–C 1.45 Å); 2. label configurations from 500 K
GFN2-xTB MD (``euclidnn label``); 3. train SchNet (``euclidnn train``); 4. classical NVT MD
and 8-bead PIMD at 300 K (``euclidnn md``); 5. nearest-neighbour, diameter and pair
distributions, classical vs PIMD, and normal modes, model vs GFN2-xTB (``euclidnn
analyze``); 6. time per force call, model vs GFN2-xTB (vs DFT with ``--dft``), and the
speed-up for the seed's 1.25 ns, 8-bead PIMD run (``timing.json``). Each step is skipped when
its output exists, so a rerun continues.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms


def c20(bond: float = 1.45) -> Atoms:
    """The 20 vertices of a regular dodecahedron, scaled to C–C = ``bond`` Å."""
    phi = (1 + 5**0.5) / 2
    vertices = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    for a in (-1, 1):
        for b in (-1, 1):
            vertices += [(0, a / phi, b * phi), (a / phi, b * phi, 0), (b * phi, 0, a / phi)]
    return Atoms("C20", positions=np.array(vertices) * bond / (2 / phi))


def euclidnn(*args: str) -> None:
    print("$ euclidnn " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "euclidnn.cli", *args], check=True)


def seconds_per_call(calculator, atoms: Atoms, calls: int) -> float:
    atoms = atoms.copy()
    atoms.calc = calculator
    atoms.get_forces()  # warm-up
    start = time.perf_counter()
    for _ in range(calls):
        atoms.positions += 1e-4
        atoms.get_forces()
    return (time.perf_counter() - start) / calls


def timing(out: Path, model: Path, dft: bool) -> dict:
    import torch
    from tblite.ase import TBLite

    from euclidnn.md import Calculator

    torch.set_num_threads(1)  # as euclidnn md does: fastest for a molecule
    atoms = c20()
    table = {
        "model_s_per_call": seconds_per_call(Calculator(model), atoms, 200),
        "gfn2_xtb_s_per_call": seconds_per_call(TBLite(method="GFN2-xTB", verbosity=0), atoms, 20),
        # (tblite on its default OpenMP threads: OMP_NUM_THREADS, else every core)
    }
    if dft:  # PBE/def2-SVP energy and forces, one call
        from euclidnn.data.label import Level, make_labeller

        labeller = make_labeller(Level("pbe", basis="def2-svp"))
        start = time.perf_counter()
        labeller(atoms)
        table["pbe_def2svp_s_per_call"] = time.perf_counter() - start
    # the seed's run: 1.25 ns of 8-bead PIMD at 0.5 fs = 2.5e6 steps × 8 force calls
    calls = 1.25e6 / 0.5 * 8
    table["model_days_for_seed_run"] = calls * table["model_s_per_call"] / 86400
    for key in [k for k in table if k.endswith("_s_per_call") and not k.startswith("model")]:
        table[key.replace("_s_per_call", "_days_for_seed_run")] = calls * table[key] / 86400
        table[key.replace("_s_per_call", "_speedup")] = table[key] / table["model_s_per_call"]
    (out / "timing.json").write_text(json.dumps(table, indent=2) + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/c20")
    parser.add_argument("--quick", action="store_true", help="a smoke run (minutes)")
    parser.add_argument("--dft", action="store_true", help="also time one PBE/def2-SVP call")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames, minutes, md_steps, pimd_steps = (
        (60, 1.5, 1000, 200) if args.quick else (400, 6.0, 8000, 2000)
    )
    structure = out / "c20.xyz"
    if not structure.exists():
        c20().write(structure)
    data = out / "c20-gfn2xtb.xyz"
    if not (out / "model" / "model.safetensors").exists():
        euclidnn("label", str(structure), "-o", str(data), "-n", str(frames),
                 "--temperature", "500", "--interval", "10", "--equilibration", "200", "--quiet")  # fmt: skip
        euclidnn("train", str(data), "--model", "schnet", "--minutes", str(minutes),
                 "--out", str(out / "model"), "--quiet", "--overwrite")  # fmt: skip
    model = out / "model" / "model.safetensors"
    common = ["--temperature", "300", "--timestep", "0.5", "--quiet", "--trajectory-interval", "10"]
    if not (out / "classical" / "summary.json").exists():
        euclidnn("md", str(model), str(structure), "--ensemble", "nvt", "--thermostat", "bussi",
                 "--steps", str(md_steps), "--out", str(out / "classical"), *common)  # fmt: skip
    if not (out / "pimd" / "summary.json").exists():
        euclidnn("md", str(model), str(structure), "--ensemble", "pimd", "--beads", "8",
                 "--steps", str(pimd_steps), "--out", str(out / "pimd"), *common)  # fmt: skip
    euclidnn("analyze", str(out / "classical"), str(out / "pimd"), "--out", str(out / "plots"),
             "--r-max", "5", "--model", str(model), "--structure", str(structure))  # fmt: skip
    table = timing(out, model, args.dft)
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
