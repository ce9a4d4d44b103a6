"""``euclidnn <command>``: a small dispatcher over the subcommand modules of ``euclidnn.cli``.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``; add a new
one to ``COMMANDS``. Errors a user can fix (``ValueError``, ``FileNotFoundError``) are printed
as one line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
    status (0 success, 2 a usage or input error, printed as ``euclidnn <command>: error: …``)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"euclidnn {args.command}: error: {error}", file=sys.stdout)
        return 2


if __name__ == "__main__":
    sys.exit(main())
