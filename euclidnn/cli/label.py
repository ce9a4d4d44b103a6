"""Sample configurations of a molecule by Langevin MD (GFN2-xTB) and label them with GFN2-xTB
or DFT (PySCF), writing extxyz in eV/Å. Rerunning the same command resumes an interrupted run.

Example: euclidnn label ethanol -o ethanol.xyz -n 1000 --method gfn2-xtb --temperature 500
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn label``."""
    parser.add_argument(
        "molecule", help="xyz file, shipped molecule name (ethanol, aspirin, …) or ASE g2 name"
    )
    parser.add_argument("-o", "--output", required=True, help="extxyz file to write or resume")
    parser.add_argument("-n", "--frames", type=int, required=True, help="frames to label")
    level = parser.add_argument_group("level of theory")
    level.add_argument(
        "--method", default="gfn2-xtb", help="gfn2-xtb (default), gfn1-xtb, hf, or a DFT xc: pbe…"
    )
    level.add_argument("--basis", default=None, help="basis for HF/DFT, e.g. def2-svp")
    level.add_argument(
        "--no-density-fit", dest="density_fit", action="store_false", help="exact Coulomb/exchange"
    )
    level.add_argument("--charge", type=int, default=0)
    level.add_argument("--multiplicity", type=int, default=1, help="2S+1")
    md = parser.add_argument_group("sampling (Langevin MD with GFN2-xTB)")
    md.add_argument("--temperature", type=float, default=500.0, help="K (default 500)")
    md.add_argument("--timestep", type=float, default=0.5, help="fs (default 0.5)")
    md.add_argument("--friction", type=float, default=0.01, help="1/fs (default 0.01)")
    md.add_argument("--interval", type=int, default=10, help="MD steps between frames (10)")
    md.add_argument("--equilibration", type=int, default=1000, help="MD steps first (1000)")
    md.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="OpenMP threads of PySCF (default: its own)"
    )
    parser.add_argument(
        "--xtb-threads",
        type=int,
        default=1,
        help="OpenMP threads of tblite (default 1: fastest for molecules)",
    )
    parser.add_argument(
        "--properties",
        default="",
        help="also label: dipole (e·Å; xTB or DFT), polarizability (Å³; DFT), comma-separated",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn label``."""
    from euclidnn.data.label import Level, Sampling, label

    sampling = Sampling(
        num_frames=args.frames,
        temperature=args.temperature,
        timestep=args.timestep,
        friction=args.friction,
        interval=args.interval,
        equilibration=args.equilibration,
        seed=args.seed,
    )
    level = Level(
        args.method,
        basis=args.basis,
        density_fit=args.density_fit,
        charge=args.charge,
        multiplicity=args.multiplicity,
    )
    frames = label(
        args.molecule,
        args.output,
        sampling,
        level,
        threads=args.threads,
        progress=not args.quiet,
        xtb_threads=args.xtb_threads,
        properties=tuple(p.strip() for p in args.properties.split(",") if p.strip()),
    )
    print(f"{args.output}: {len(frames)} frames, {level.name}, eV/Å")
    return 0
