"""Child processes (the i-PI server, force clients) that are stopped on every way out.

Each child runs in its own process group with its output in a log file; :meth:`Processes.close`
sends SIGTERM to each group, then SIGKILL after a grace period, and removes the UNIX socket
file of the run. :func:`raise_on_sigterm` turns SIGTERM into ``SystemExit`` so that the
``finally`` block that calls it runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from euclidnn.md.serve import Address

__all__ = ["Child", "Processes", "stop", "raise_on_sigterm"]


@dataclass(frozen=True)
class Child:
    """A child process that :class:`Processes` started, and the log its output goes to."""

    process: subprocess.Popen
    log_path: Path
    log: IO[str]

    def poll(self) -> int | None:
        """Its exit status, or None while it runs (−N: killed by signal N)."""
        return self.process.poll()


class Processes:
    """Children in their own process groups, stopped (TERM, then KILL) by :meth:`close`."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.children: list[Child] = []

    def start(self, command: list[str], cwd: Path, log_name: str) -> Child:
        """Start ``command`` in ``cwd``, in a new process group, output to ``cwd/log_name``."""
        log = open(cwd / log_name, "w")
        try:
            process = subprocess.Popen(
                command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError:
            log.close()
            raise
        child = Child(process, cwd / log_name, log)
        self.children.append(child)
        return child

    def wait_for_socket(self, server: Child, timeout: float) -> None:
        """Until i-PI listens (a UNIX socket file appears; TCP clients retry by themselves)."""
        deadline = time.monotonic() + timeout
        while self.address.is_unix and not self.address.path.exists():
            code = server.poll()
            if code is not None:
                raise RuntimeError(f"i-PI exited with code {code}: see {server.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"i-PI did not open {self.address.path} in {timeout:g} s")
            time.sleep(0.02)

    def close(self) -> None:
        """Stop every child (clients first, then the server), close the logs, and remove the
        UNIX socket file."""
        for child in reversed(self.children):
            stop(child.process)
        for child in self.children:
            child.log.close()
        if self.address.is_unix and self.children:
            self.address.path.unlink(missing_ok=True)  # ours: it did not exist before


def stop(process: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM to the process group of ``process``; SIGKILL if it is still there after
    ``grace`` s."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def raise_on_sigterm():
    """Turn SIGTERM into SystemExit (so that ``finally`` blocks run); returns the previous
    handler, or None where signals cannot be set (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, handler)
