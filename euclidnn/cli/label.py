"""Sample configurations of a molecule or a periodic cell by Langevin MD (xTB) and label them
with xTB or DFT (PySCF; molecules only), writing extxyz in eV/Å (a cell's stress in eV/Å³).
Rerunning the same command resumes an interrupted run.

Example: euclidnn label ethanol -o ethanol.xyz -n 1000 --method gfn2-xtb --temperature 500
A cell: euclidnn label LiF.xyz -o LiF_frames.xyz -n 200 --method gfn1-xtb --temperature 1000
(LiF.xyz: extxyz with Lattice="..." and pbc="T T T"; labels at tblite's Γ point, with stress)
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn label``."""
    parser.add_argument(
        "molecule",
        help="xyz/extxyz file (a periodic cell: Lattice= and pbc in its header), shipped "
        "molecule name (ethanol, aspirin, …) or ASE g2 name",
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
    md = parser.add_argument_group("sampling (Langevin MD with xTB)")
    md.add_argument("--temperature", type=float, default=500.0, help="K (default 500)")
    md.add_argument(
        "--timestep",
        type=float,
        default=None,
        help="fs (default 0.5; 1 for a periodic cell without H)",
    )
    md.add_argument("--friction", type=float, default=0.01, help="1/fs (default 0.01)")
    md.add_argument("--interval", type=int, default=10, help="MD steps between frames (10)")
    md.add_argument(
        "--equilibration",
        type=int,
        default=None,
        help="MD steps first (default 1000; a periodic cell: 2/(friction*timestep), 200 at 1 fs)",
    )
    md.add_argument("--seed", type=int, default=0)
    md.add_argument(
        "--sampling-method",
        default=None,
        help="xTB of the MD: gfn2-xtb, gfn1-xtb (default: gfn2-xtb for a molecule, the "
        "labelling method for a periodic cell)",
    )
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
        method=args.sampling_method,
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
    periodic = bool(frames) and bool(frames[0].pbc.any())
    units = "eV/Å, stress eV/Å³, Γ point" if periodic else "eV/Å"
    print(f"{args.output}: {len(frames)} frames, {level.name}, {units}")
    return 0
