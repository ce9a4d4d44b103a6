"""Point group of a molecule or space group of a crystal, its elements, and the tensor
properties it allows; optionally the symmetrized structure and the spherical signal of one
atom's neighbourhood.

Examples:
  euclidnn symmetry benzene.xyz
  euclidnn symmetry C60 --operations                 (an ASE molecule name works too)
  euclidnn symmetry noisy.xyz --symmetrize clean.xyz --tolerance 0.05
  euclidnn symmetry POSCAR                           (periodic in 3D → space group, spglib)
  euclidnn symmetry CH4 --plot-signal methane.png --atom 0
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

#: largest --lmax of --plot-signal: a handful of neighbours shows no detail beyond it, and the
#: bispectrum's cost grows steeply (minutes at lmax 40)
MAX_LMAX = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn symmetry``."""
    parser.add_argument(
        "structure", help="structure file (xyz, extxyz, cif, POSCAR, …) or an ASE molecule name"
    )
    parser.add_argument(
        "--index", default="0", help="frame of a multi-frame file: 0 first (default), -1 last"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="Å; molecules: atoms matched within this (default 0.1); crystals: spglib symprec (default 1e-3)",
    )
    parser.add_argument(
        "--operations", action="store_true", help="list every element with its axis"
    )
    parser.add_argument(
        "--symmetrize", metavar="OUT", type=Path, help="write the symmetrized structure"
    )
    parser.add_argument(
        "--plot-signal", metavar="PNG", type=Path, help="plot Σ_j Y(r̂_ij) of one atom's neighbours"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the files of --symmetrize and --plot-signal when they exist",
    )
    parser.add_argument(
        "--atom", type=int, default=0, help="centre atom of --plot-signal (default 0)"
    )
    parser.add_argument(
        "--r-max",
        type=float,
        default=3.0,
        help="Å, neighbours of --plot-signal (default 3; at most 50, or a wider molecule's "
        "diameter + 1)",
    )
    parser.add_argument(
        "--lmax", type=int, default=6, help=f"largest l of --plot-signal, 0 … {MAX_LMAX} (6)"
    )


def _read(name: str, index: str):
    """Frame ``index`` of the file ``name``, or the ASE molecule ``name``, with its positions
    checked; errors name the file and the frame."""
    from ase.build import molecule
    from ase.collections import g2

    from euclidnn.data.geometry_checks import check_positions

    frame = _frame_number(index)
    path = Path(name)
    if path.is_dir():
        raise IsADirectoryError(
            f"{name}: is a folder; give a structure file (xyz, extxyz, cif, POSCAR, …) "
            "or an ASE molecule name"
        )
    if path.exists():
        frames = _read_frames(path, frame)
        if not -len(frames) <= frame < len(frames):
            raise ValueError(
                f"--index {index}: {name} has {len(frames)} frame(s); give 0 … "
                f"{len(frames) - 1}, or -1 for the last"
            )
        frame %= len(frames)
        atoms = frames[frame]
        check_positions(atoms, f"{name} frame {frame}")
        return atoms
    if name in g2.names or name in ("C60",):
        return molecule(name)
    raise FileNotFoundError(f"structure: {name!r} is neither a file nor an ASE molecule name")


def _write(path: Path, atoms) -> None:
    """``--symmetrize OUT``: written whole (a temporary file renamed), in the format of its
    suffix; an unknown suffix or a folder there is a ``ValueError`` naming the option."""
    import ase.io
    from ase.io.formats import filetype, ioformats

    from euclidnn.files import replacing

    if path.is_dir():
        raise IsADirectoryError(f"--symmetrize {path}: is a folder; give a file name")
    try:
        format = filetype(path, read=False)
    except Exception:  # ASE's UnknownFileTypeError
        format = None
    if format not in ioformats or not ioformats[format].can_write:
        raise ValueError(
            f"--symmetrize {path}: unknown structure format {path.suffix!r}; use .xyz, "
            ".extxyz, .cif, .vasp, …"
        )
    with replacing(path) as tmp:
        ase.io.write(tmp, atoms, format=format)


def _frame_number(index: str) -> int:
    try:
        return int(index)
    except ValueError:
        raise ValueError(
            f"--index {index}: give a frame number (0 the first, -1 the last)"
        ) from None


def _read_frames(path: Path, frame: int) -> list:
    """The frames of ``path`` up to ``frame`` (all of them for a negative one); a frame that
    cannot be read is a ``ValueError`` naming the file and the frame."""
    from ..data.readers import iread

    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty")
    frames = []
    try:
        for atoms in iread(path):
            frames.append(atoms)
            if 0 <= frame < len(frames):
                break
    except Exception as error:  # ASE raises many kinds (format unknown, frame cut short, …)
        what = " ".join(str(error).split()) or type(error).__name__
        if type(error).__name__ == "UnknownFileTypeError":
            what = f"not a structure format ASE knows ({what})"
        raise ValueError(
            f"{path}: frame {len(frames)} cannot be read as a structure: {what}"
        ) from None
    return frames


def _plot_signal(atoms, args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from matplotlib.figure import Figure  # no pyplot: no backend, no global figure registry

    from euclidnn.data import check_cutoff, neighbor_list
    from euclidnn.files import replacing
    from euclidnn.o3 import Irreps
    from euclidnn.symmetry import bispectrum, power_spectrum, sphere_signal, spherical_projection

    if not 0 <= args.atom < len(atoms):
        raise ValueError(f"--atom: {args.atom} is not an atom index (0 … {len(atoms) - 1})")
    check_cutoff(args.r_max, "--r-max", atoms)
    cell = np.asarray(atoms.cell[:]) if atoms.pbc.any() else None
    src, dst, shift = neighbor_list(atoms.positions, cell, atoms.pbc, args.r_max)
    src, shift = src[dst == args.atom], shift[dst == args.atom]
    if len(src) == 0:
        raise ValueError(f"--r-max: atom {args.atom} has no neighbours within {args.r_max} Å")
    vectors = (
        atoms.positions[src]
        - atoms.positions[args.atom]
        + (shift @ cell if cell is not None else 0)
    )
    c = spherical_projection(torch.tensor(vectors), args.lmax)
    theta, phi = np.meshgrid(
        np.linspace(0, np.pi, 90), np.linspace(-np.pi, np.pi, 180), indexing="ij"
    )
    directions = np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1
    )
    signal = sphere_signal(
        c, Irreps.spherical_harmonics(args.lmax), torch.tensor(directions)
    ).numpy()
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    image = axes[0].pcolormesh(phi, theta, signal, cmap="RdBu_r", shading="auto")
    fig.colorbar(image, ax=axes[0])
    axes[0].set(
        xlabel="φ (azimuth from x)",
        ylabel="θ (from z)",
        title=f"Σ_j Y(r̂_ij), atom {args.atom}, {len(src)} neighbours",
    )
    axes[1].bar(range(args.lmax + 1), power_spectrum(c, args.lmax).numpy())
    axes[1].set(xlabel="l", ylabel="p_l = |c^l|²", title="power spectrum")
    fig.tight_layout()
    with replacing(args.plot_signal) as tmp:  # the temporary name keeps the format's suffix
        fig.savefig(tmp, dpi=100)
    print(
        f"signal of atom {args.atom}: {len(src)} neighbours within {args.r_max} Å; "
        f"{bispectrum(c, args.lmax).shape[-1]} bispectrum invariants; wrote {args.plot_signal}"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn symmetry``."""
    import numpy as np

    from euclidnn.cli.config_io import refuse_existing
    from euclidnn.symmetry import (
        DEFAULT_SYMPREC,
        DEFAULT_TOLERANCE,
        allowed_properties,
        describe_operation,
        format_properties,
        point_group,
        schoenflies_name,
        space_group,
        symmetrize,
    )

    if args.plot_signal is not None and not 0 <= args.lmax <= MAX_LMAX:
        raise ValueError(f"--lmax {args.lmax}: give 0 … {MAX_LMAX}")
    for option, path in (("--symmetrize", args.symmetrize), ("--plot-signal", args.plot_signal)):
        refuse_existing([path] if path is not None else [], option, args.overwrite)
    atoms = _read(args.structure, args.index)
    periodic = bool(np.all(atoms.pbc))
    if periodic:
        tolerance = DEFAULT_SYMPREC if args.tolerance is None else args.tolerance
        group = space_group(atoms, tolerance)
        print(f"{args.structure}: {len(atoms)} atoms, periodic")
        print(
            f"space group {group.name} (No. {group.number}), {group.order} elements in this cell; "
            f"crystal class {schoenflies_name(group.operations)} (tolerance {tolerance} Å)"
        )
    else:
        tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
        group = point_group(atoms, tolerance)
        finite = (
            f" (finite stand-in of order {group.order})"
            if group.name in ("Cinfv", "Dinfh", "Kh")
            else ""
        )
        print(f"{args.structure}: {len(atoms)} atoms, molecule")
        print(
            f"point group {group.name}, order {group.order}{finite} (tolerance {group.tolerance:g} Å)"
        )
    labels = [describe_operation(R) for R in group.operations]
    counts = Counter(label for label, _ in labels)
    print("elements: " + ", ".join(f"{n} {label}" for label, n in counts.items()))
    if args.operations:
        for g, ((label, axis), t) in enumerate(zip(labels, group.translations)):
            where = (
                "" if axis is None else f" axis ({axis[0]: .4f}, {axis[1]: .4f}, {axis[2]: .4f})"
            )
            shift = f" + translation ({t[0]:.4f}, {t[1]:.4f}, {t[2]:.4f}) Å" if periodic else ""
            print(f"  {g:3d} {label:6s}{where}{shift}")
    print()
    print(format_properties(allowed_properties(group)))
    if args.symmetrize is not None:
        result = symmetrize(atoms, group=group)
        _write(args.symmetrize, result.structure.to_ase())
        print(
            f"\nsymmetrized to {group.name}: largest displacement {result.max_displacement:.2e} Å; wrote {args.symmetrize}"
        )
    if args.plot_signal is not None:
        _plot_signal(atoms, args)
    return 0
