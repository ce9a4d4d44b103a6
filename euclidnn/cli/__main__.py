"""``euclidnn <command>``: a small dispatcher over the subcommand modules of ``euclidnn.cli``.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``; add a new
one to ``COMMANDS``. Errors a user can fix (``ValueError``, ``FileNotFoundError``) are printed
as one line and exit with status 2, without a traceback.

Before anything loads torch, :func:`main` makes OpenMP's waiting threads sleep instead of
spin (:func:`set_openmp_defaults`): the one process-wide setting the command makes, and the
reason this module and ``euclidnn/__init__.py`` import torch only on demand.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import MutableMapping

#: subcommand name -> (module under euclidnn.cli, one-line help)
COMMANDS = {
    "label": ("label", "sample configurations by MD and label them with xTB or DFT"),
    "train": ("train", "train a potential on labelled structures"),
    "evaluate": ("evaluate", "errors of a trained model on labelled structures, with plots"),
    "learning-curve": ("learning_curve", "test error against training-set size, log-log"),
    "md": ("md", "molecular dynamics with a model: NVE, NVT, path-integral MD (i-PI)"),
    "serve": ("serve", "serve a model's forces to an i-PI server (beads on this machine)"),
    "analyze": ("analyze", "plots of MD runs: g(r), distances, MSD, VDOS; normal modes"),
    "symmetry": ("symmetry", "point/space group, its elements, allowed tensor properties"),
    "interpret": ("interpret", "element-embedding PCA, local chemical potential of a probe atom"),
}


#: environment variables through which a user chooses how idle OpenMP threads wait: GNU
#: libgomp's (PyTorch's runtime on Linux) and LLVM/Intel libomp's (macOS)
OPENMP_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def set_openmp_defaults(environ: MutableMapping[str, str]) -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` unless it names any of
    :data:`OPENMP_WAIT_VARIABLES` (a user's own choice wins, whole).

    Why: libgomp's threads spin for about 3 ms at every barrier before they sleep. Beside a
    second busy process on the same cores, a spinning thread holds a core its partner needs,
    and a training of small tensors (thousands of parallel regions a second) ran 10-60× slower
    with PyTorch's default two threads (bench/contention.py, bench/RESULTS.md "Contention").
    With the passive policy it runs about 2× slower, as two fair jobs should, and about as
    fast alone. OpenMP reads the variables once, when its runtime is loaded (at
    ``import torch``), so this must run before that; child processes inherit it.

    >>> environ = {}
    >>> set_openmp_defaults(environ)
    >>> environ
    {'OMP_WAIT_POLICY': 'PASSIVE'}
    >>> environ = {"GOMP_SPINCOUNT": "10000"}
    >>> set_openmp_defaults(environ)
    >>> environ
    {'GOMP_SPINCOUNT': '10000'}
    """
    if not any(name in environ for name in OPENMP_WAIT_VARIABLES):
        environ["OMP_WAIT_POLICY"] = "PASSIVE"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command."""
    parser = argparse.ArgumentParser(prog="euclidnn", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"euclidnn.cli.{module_name}")
        sub = subparsers.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the chosen command; returns the exit
    status (0 success, 2 a usage or input error, printed as ``euclidnn <command>: error: …``).

    OpenMP's defaults go into ``os.environ`` first (:func:`set_openmp_defaults`), before
    building the parser imports torch through the subcommand modules."""
    set_openmp_defaults(os.environ)
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"euclidnn {args.command}: error: {error}", file=sys.stdout)
        return 2


if __name__ == "__main__":
    sys.exit(main())
