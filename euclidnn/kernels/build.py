"""Building, caching and loading the C kernels: one :class:`Library` object per C source.

A library is compiled on first use with the system C compiler (``$CC``, default ``cc``) into
``$EUCLIDNN_CACHE`` (default ``~/.cache/euclidnn``), under a name keyed by a hash of

- the source text, the compiler's ``--version``, the flags and the libraries, and
- the instruction set the compiler targets: the macros that ``cc -march=native -dM -E``
  predefines (``__AVX2__``, ``__ARM_FEATURE_SVE`` …), so a cache shared by machines of
  different CPUs never hands one of them code it cannot run (SIGILL).

The file is written to a temporary name and renamed (a concurrent build leaves one complete
file). Loading a library runs its code, so a cached library is loaded only from a directory
owned by the current user that nobody else can write, and only if the file itself is owned by
the user and not writable by others. Any failure (no compiler, a failed build, an unsafe
cache, a library that will not load) gives one warning and ``None``: the callers run their
PyTorch reference instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["Library", "cache_directory", "check_private", "target_flags"]

_BASE_FLAGS = ("-O3", "-fopenmp", "-shared", "-fPIC", "-std=c11")


def cache_directory() -> Path:
    """Where built libraries go: ``$EUCLIDNN_CACHE``, default ``~/.cache/euclidnn``."""
    return Path(os.environ.get("EUCLIDNN_CACHE", Path.home() / ".cache" / "euclidnn"))


def check_private(path: Path) -> None:
    """Raise ``PermissionError`` unless ``path`` is owned by this user and not writable by the
    group or others (a library loaded from there runs its code in this process)."""
    if not hasattr(os, "getuid"):  # no POSIX ownership to check (Windows)
        return
    info = path.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(f"{path} is owned by uid {info.st_uid}, not by this user")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(
            f"{path} is writable by others (mode {stat.filemode(info.st_mode)}); "
            "refusing to load a library from it"
        )


def _run(command: Sequence[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def target_flags(cc: str) -> tuple[list[str], str]:
    """(``["-march=native"]``, the macros it predefines) where the compiler accepts it, else
    ``([], the default target's macros)``: the identity of the instruction set built for."""
    for flags in (["-march=native"], []):
        try:
            return flags, _run([cc, *flags, "-dM", "-E", "-x", "c", os.devnull])
        except (OSError, subprocess.CalledProcessError):
            continue
    return [], ""


class Library:
    """A C source compiled once per machine and loaded on first use.

    Args:
        source: the C file.
        what: what runs instead where the library is unavailable (for the warning).
        functions: ``{name: (restype, argtypes)}`` ctypes signatures to set on load.
        extra_flags, libs: compiler flags and libraries beyond the defaults
            (``-O3 -fopenmp -shared -fPIC -std=c11``, ``-march=native`` where accepted).
        on_load: called with the loaded ``ctypes.CDLL``; what it returns is kept as
            :attr:`extra` (e.g. addresses of outside functions); it may raise to refuse the
            library.
    """

    def __init__(
        self,
        source: Path,
        what: str,
        functions: dict[str, tuple[object, list]],
        extra_flags: Sequence[str] = (),
        libs: Sequence[str] = ("-lm",),
        on_load: Callable[[ctypes.CDLL], object] | None = None,
    ) -> None:
        self.source, self.what = Path(source), what
        self.functions = functions
        self.extra_flags, self.libs = tuple(extra_flags), tuple(libs)
        self.on_load = on_load
        self._lock = threading.Lock()
        self._tried = False
        self._handle: ctypes.CDLL | None = None
        self.extra: object = None

    def get(self) -> ctypes.CDLL | None:
        """The loaded library, or ``None`` where it cannot be built or loaded (one warning)."""
        if not self._tried:
            with self._lock:
                if not self._tried:
                    try:
                        self._handle = self._load()
                    except Exception as err:  # noqa: BLE001 (any failure means: use PyTorch)
                        warnings.warn(
                            f"euclidnn: the C kernel {self.source.name} is unavailable "
                            f"({type(err).__name__}: {err}); using the slower {self.what}",
                            stacklevel=3,
                        )
                    self._tried = True
        return self._handle

    def _load(self) -> ctypes.CDLL:
        cc = os.environ.get("CC", "cc")
        if shutil.which(cc) is None:
            raise FileNotFoundError(f"no C compiler {cc!r} on PATH")
        target, isa = target_flags(cc)
        flags = [*_BASE_FLAGS, *target, *self.extra_flags]
        key = hashlib.sha256(
            "\0".join(
                [self.source.read_text(), _run([cc, "--version"]), *flags, *self.libs, isa]
            ).encode()
        ).hexdigest()
        cache = cache_directory()
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_private(cache)
        path = cache / f"{self.source.stem.lstrip('_')}_{key[:16]}.so"
        if not path.exists():
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                out = Path(tmp) / path.name
                try:
                    _run([cc, *flags, str(self.source), "-o", str(out), *self.libs])
                except subprocess.CalledProcessError as err:
                    raise RuntimeError(f"build failed: {err.stderr.strip()[:500]}") from None
                os.chmod(out, 0o700)
                os.replace(out, path)  # atomic: concurrent builds leave one complete file
        check_private(path)
        handle = ctypes.CDLL(str(path))
        for name, (restype, argtypes) in self.functions.items():
            function = getattr(handle, name)
            function.restype, function.argtypes = restype, argtypes
        if self.on_load is not None:
            self.extra = self.on_load(handle)
        return handle
