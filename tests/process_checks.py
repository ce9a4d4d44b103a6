"""For tests that check that no child process outlives a command (i-PI, its clients, LAMMPS's
ranks): ``from process_checks import processes_in`` (``tests/`` is on pytest's path, beside
its conftest.py)."""

import os
from pathlib import Path


def processes_in(folder: Path) -> list[int]:
    """Processes whose working directory is ``folder`` (i-PI, its clients and LAMMPS's ranks
    run there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == folder.resolve():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
