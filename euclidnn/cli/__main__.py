"""``euclidnn <command>``: a small dispatcher over the subcommand modules of ``euclidnn.cli``.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``; add a new
one to ``COMMANDS``.

Errors: :func:`main` is the one place where what a command raises becomes what the user sees,
one line on stderr and an exit status, never a traceback:

- **user errors**, exit 2, ``euclidnn <command>: error: <message>``: ``ValueError`` (bad values,
  files, configs, labels, units; its subclass :class:`UsageError` for misuse of the command
  line, argparse's own complaints included), ``OSError`` (FileNotFoundError, IsADirectoryError,
  NotADirectoryError, FileExistsError, PermissionError, a full disk, a refused connection: the
  user's files, folders and machine) and running out of memory (``MemoryError``, PyTorch's
  ``OutOfMemoryError``). The library writes these messages to name the file, frame, option or
  field and what would be valid.
- **Ctrl-C**, exit 130: ``euclidnn <command>: interrupted``, or the message of the
  ``KeyboardInterrupt`` a command raises in its place (``train`` says how to resume).
- **anything else** is a bug of euclidnn (``TypeError``, ``KeyError``, ``RuntimeError``, …),
  exit 1: one line that says so and how to report it. ``IndexError`` is one of these: ``--index``
  is checked where it is parsed (with the frame count in the message), so an IndexError that
  reaches here is a bug, not a user's mistake.

``euclidnn --debug <command> …`` or ``EUCLIDNN_DEBUG=1`` prints the traceback above the line.

Before anything loads torch, :func:`main` makes OpenMP's waiting threads spin briefly and
then sleep (:func:`set_openmp_defaults`): the one process-wide setting the command makes, and
the reason this module and ``euclidnn/__init__.py`` import torch only on demand.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import MutableMapping

#: subcommand name -> (module under euclidnn.cli, one-line help)
COMMANDS = {
    "label": ("label", "sample configurations by MD and label them with xTB or DFT"),
    "train": ("train", "train a potential on labelled structures"),
    "evaluate": ("evaluate", "errors of a trained model on labelled structures, with plots"),
    "learning-curve": ("learning_curve", "test error against training-set size, log-log"),
    "md": ("md", "molecular dynamics with a model: NVE, NVT, path-integral MD (i-PI)"),
    "lammps": ("lammps", "build pair_style euclidnn, the LAMMPS plugin, and show its use"),
    "serve": ("serve", "serve a model's forces to an i-PI server (beads on this machine)"),
    "analyze": ("analyze", "MD runs: g(r), distances, angles, MSD, diffusion, VDOS; normal modes"),
    "symmetry": ("symmetry", "point/space group, its elements, allowed tensor properties"),
    "interpret": ("interpret", "element-embedding PCA, local chemical potential of a probe atom"),
    "learn": (
        "learn",
        "active learning: a committee, committee-mean MD and a reference labeller, in a loop",
    ),
    "export": (
        "export",
        "write a model as a TorchScript file for C++ (LAMMPS pair_style euclidnn)",
    ),
}


#: environment variables through which a user chooses how idle OpenMP threads wait: GNU
#: libgomp's (PyTorch's runtime on Linux) and LLVM/Intel libomp's (macOS)
OPENMP_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


#: what every command sets when the user set none of :data:`OPENMP_WAIT_VARIABLES`
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"}


def set_openmp_defaults(environ: MutableMapping[str, str]) -> None:
    """Put :data:`OPENMP_DEFAULTS` into ``environ`` unless it names any of
    :data:`OPENMP_WAIT_VARIABLES` (a user's own choice wins, whole).

    Why: libgomp's idle threads spin for about 3 ms (300 000 spins) before they sleep. Beside
    a second busy process on the same cores, a spinning thread holds a core its partner needs,
    and a training of small tensors (thousands of parallel regions a second) stalled or ran
    5× slower and more beside one other job with PyTorch's default two threads. With 1000
    spins (some 10 µs) and then sleep it ran 2.2× slower beside one, and 1.2× slower alone;
    sleeping at once (passive, 0 spins) ran 0.6× beside one but 2.5× slower alone, because
    every parallel region then wakes a sleeping thread (bench/RESULTS.md, "Contention").
    ``GOMP_SPINCOUNT`` is libgomp's (PyTorch's runtime on Linux) and overrides the policy
    there; other OpenMP runtimes read the standard ``OMP_WAIT_POLICY``. OpenMP reads both
    once, when its runtime is loaded (at ``import torch``), so this must run before that;
    child processes inherit them.

    >>> environ = {}
    >>> set_openmp_defaults(environ)
    >>> environ
    {'OMP_WAIT_POLICY': 'PASSIVE', 'GOMP_SPINCOUNT': '1000'}
    >>> environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    >>> set_openmp_defaults(environ)
    >>> environ
    {'OMP_WAIT_POLICY': 'ACTIVE'}
    """
    if not any(name in environ for name in OPENMP_WAIT_VARIABLES):
        environ.update(OPENMP_DEFAULTS)


class UsageError(ValueError):
    """A misused command line: a bad option value or combination (exit status 2)."""

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog  # the (sub)command whose line it is, when the parser knows it


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose complaints go through :func:`main` as one line."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)", prog=self.prog)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command."""
    parser = _Parser(prog="euclidnn", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (or EUCLIDNN_DEBUG=1)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"euclidnn.cli.{module_name}")
        sub = subparsers.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the chosen command; returns the exit
    status: 0 success, 2 a user error, 130 Ctrl-C, 1 an internal error (see the module
    docstring), each reported as one line on stderr."""
    set_openmp_defaults(os.environ)  # before the subcommand modules import torch
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("EUCLIDNN_DEBUG", "") not in ("", "0") or "--debug" in argv[:1]
    prog = "euclidnn"
    try:
        args, unknown = build_parser().parse_known_args(argv)
        prog = f"euclidnn {args.command}"
        if unknown:
            raise UsageError(f"unrecognized arguments: {' '.join(unknown)} (see {prog} --help)")
        return int(args.run(args) or 0)
    except BaseException as error:  # the one place where errors become exit statuses
        if isinstance(error, SystemExit):  # --help, --version: argparse's own exits
            raise
        if debug:
            traceback.print_exc()
        status, line = _report(error)
        prog = getattr(error, "prog", None) or prog
        print(f"{prog}: {line}", file=sys.stderr, flush=True)
        return status


#: what running out of memory raises: Python's, and PyTorch's (a RuntimeError, found by name)
_OUT_OF_MEMORY = ("MemoryError", "OutOfMemoryError")


def _report(error: BaseException) -> tuple[int, str]:
    """(exit status, the line after ``euclidnn <command>: ``) for what a command raised."""
    if isinstance(error, KeyboardInterrupt):
        return 130, _one_line(str(error)) or "interrupted"
    if isinstance(error, RuntimeError) and "KeyboardInterrupt:" in str(error):
        # Ctrl-C inside a Python op that TorchScript called (an exported model's custom op):
        # the interpreter hands it back wrapped in a RuntimeError
        return 130, "interrupted"
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        where = " → ".join(str(f) for f in (error.filename, error.filename2) if f is not None)
        return 2, f"error: {where}: {error.strerror}"
    if isinstance(error, (ValueError, OSError)):
        return 2, f"error: {_one_line(str(error)) or type(error).__name__}"
    if type(error).__name__ in _OUT_OF_MEMORY:
        detail = _one_line(str(error))[:200]
        return 2, f"error: out of memory{f' ({detail})' if detail else ''}; use smaller inputs"
    return 1, (
        f"internal error ({type(error).__name__}: {_one_line(str(error))[:300]}); this is a bug "
        "in euclidnn: rerun with `euclidnn --debug …` and report the traceback"
    )


def _one_line(text: str) -> str:
    """``text`` with its line breaks (YAML errors, wrapped messages) folded into spaces."""
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
