"""What a trained model learned: PCA of its element embeddings, or the local chemical potential
Ω_Z(r) of a probe atom around a molecule; each writes a PNG and the numbers (CSV and JSON).

Examples:
  euclidnn interpret embeddings runs/train/model.safetensors --out interpret/
  euclidnn interpret potential runs/train/model.safetensors C6H6 --probe C --out interpret/
  euclidnn interpret potential model.safetensors molecule.xyz --probe O --plane --spacing 0.1
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from euclidnn.cli.md import check_out_folder, threads_argument, where


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn interpret embeddings|potential``."""
    commands = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    embeddings = commands.add_parser(
        "embeddings", help="PCA of the learned element embeddings, coloured by periodic group"
    )
    embeddings.add_argument("model", help="a model file (model.safetensors of euclidnn train)")
    embeddings.add_argument("--out", default="interpret", help="folder for the outputs")
    embeddings.add_argument("--title", default="", help="title of the plot")
    embeddings.add_argument(
        "--overwrite", action="store_true", help="replace embeddings_pca.* in --out"
    )

    potential = commands.add_parser(
        "potential", help="local chemical potential Ω_Z(r) of a probe atom around a molecule"
    )
    potential.add_argument("model", help="a SchNet or NequIP model file")
    potential.add_argument(
        "structure", help="xyz/extxyz file (first frame), shipped molecule or ASE g2 name (C6H6)"
    )
    potential.add_argument("--probe", required=True, help="element of the probe atom, e.g. C")
    potential.add_argument(
        "--plane", action="store_true", help="a grid in the molecule's plane, not the surface"
    )
    potential.add_argument(
        "--offset",
        type=float,
        default=2.0,
        help="surface Σ‖r − r_i‖ = Σ‖r̄ − r_i‖ + n·OFFSET, Å (default 2.0)",
    )
    potential.add_argument("--level", type=float, help="the surface's c in Å (overrides offset)")
    potential.add_argument(
        "--resolution",
        type=int,
        default=48,
        help="θ steps on the surface, 2 … 500 (φ: twice as many; default 48)",
    )
    potential.add_argument(
        "--spacing", type=float, default=0.1, help="plane grid spacing, ≥ 0.01 Å (0.1)"
    )
    potential.add_argument("--batch-size", type=int, default=2048, help="probes per evaluation")
    potential.add_argument("--out", default="interpret", help="folder for the outputs")
    potential.add_argument("--name", help="file stem (default potential-<molecule>-<probe>)")
    potential.add_argument(
        "--overwrite", action="store_true", help="replace this map's files (<name>.*) in --out"
    )
    potential.add_argument("--threads", type=threads_argument, help="CPU threads for PyTorch")


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn interpret``."""
    from euclidnn.cli.config_io import refuse_existing
    from euclidnn.models import load_model

    out = Path(args.out)
    check_out_folder(out, "--out")
    stem = "embeddings_pca" if args.what == "embeddings" else _stem(args)
    paths = [out / f"{stem}.{suffix}" for suffix in ("png", "csv", "json")]
    refuse_existing(paths, "--out", args.overwrite)
    model = load_model(args.model).eval()
    if args.what == "embeddings":
        return _embeddings(model, args)
    return _potential(model, args)


def _stem(args: argparse.Namespace) -> str:
    """The file stem of ``interpret potential``'s outputs."""
    return args.name or f"potential-{Path(args.structure).stem}-{args.probe}"


def _embeddings(model, args) -> int:
    from euclidnn.interpret import embedding_pca, write_embedding_pca

    pca = embedding_pca(model)
    paths = write_embedding_pca(pca, args.out, args.title)
    ratio = ", ".join(f"{100 * v:.1f} %" for v in pca.explained_variance_ratio)
    agreement = pca.neighbour_agreement()
    print(f"{args.model}: {len(pca.species)} species; explained variance of PC1, PC2: {ratio}")
    print(
        "nearest neighbour in the PC plane in the same group: "
        f"{agreement['same_group']:.2f} (chance {agreement['same_group_chance']:.2f}), "
        f"same period: {agreement['same_period']:.2f} (chance {agreement['same_period_chance']:.2f})"
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _potential(model, args) -> int:
    import torch
    from ase.data import atomic_numbers

    from euclidnn.data.geometry_checks import check_positions
    from euclidnn.data.molecules import load_molecule
    from euclidnn.data.structure import Structure
    from euclidnn.interpret import potential_map, write_potential_map

    if not 2 <= args.resolution <= 500:
        raise ValueError(f"--resolution {args.resolution}: give 2 … 500 steps in θ")
    if not (math.isfinite(args.spacing) and args.spacing >= 0.01):
        raise ValueError(f"--spacing {args.spacing}: give a grid spacing ≥ 0.01 Å")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe not in atomic_numbers:
        raise ValueError(f"--probe {args.probe!r}: not an element symbol")
    number = atomic_numbers[args.probe]
    species = model.species
    if number not in species:
        raise ValueError(f"--probe {args.probe}: {args.model} knows only atomic numbers {species}")
    atoms = load_molecule(args.structure)
    check_positions(atoms, where(args.structure))
    structure = Structure.from_ase(atoms)
    result = potential_map(
        model,
        structure,
        number,
        "plane" if args.plane else "surface",
        offset=args.offset,
        level=args.level,
        resolution=args.resolution,
        spacing=args.spacing,
        batch_size=args.batch_size,
    )
    result.notes.update(model=str(args.model), structure=str(args.structure))
    paths = write_potential_map(
        result, args.out, _stem(args), f"Ω_{args.probe} around {args.structure}"
    )
    print(
        f"{args.structure}: Ω_{args.probe} on {len(result.omega)} points ({result.kind}): "
        f"{result.omega.min():.3f} … {result.omega.max():.3f} eV"
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
