"""Writing files whole: a crash or Ctrl-C leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["replacing", "write_bytes", "write_text"]


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; renamed onto ``path`` when the
    block ends, removed when it raises. The temporary name keeps the suffix (a plotting or
    serialisation library may read the format from it) and the parent folder is created.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with replacing(f"{d}/a.txt") as tmp:
    ...         _ = tmp.write_text("whole")
    ...     sorted(p.name for p in Path(d).iterdir()), (Path(d) / "a.txt").read_text()
    (['a.txt'], 'whole')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
