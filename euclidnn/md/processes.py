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
from pathlib import Path

from euclidnn.md.serve import Address

__all__ = ["Processes", "stop", "raise_on_sigterm"]


class Processes:
    """Children in their own process groups, stopped (TERM, then KILL) by :meth:`close`."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.children: list[tuple[subprocess.Popen, object]] = []

    def start(self, command: list[str], cwd: Path, log_name: str) -> subprocess.Popen:
        log = open(cwd / log_name, "w")
        try:
            process = subprocess.Popen(
                command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError:
            log.close()
            raise
        process.log_path = cwd / log_name
        self.children.append((process, log))
        return process

    def wait_for_socket(self, server: subprocess.Popen, timeout: float) -> None:
        """Until i-PI listens (a UNIX socket file appears; TCP clients retry by themselves)."""
        deadline = time.monotonic() + timeout
        while self.address.is_unix and not self.address.path.exists():
            if server.poll() is not None:
                raise RuntimeError(
                    f"i-PI exited with code {server.returncode}: see {server.log_path}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"i-PI did not open {self.address.path} in {timeout:g} s")
            time.sleep(0.02)

    def close(self) -> None:
        for process, _ in reversed(self.children):  # clients first, then the server
            stop(process)
        for _, log in self.children:
            log.close()
        if self.address.is_unix and self.children:
            self.address.path.unlink(missing_ok=True)  # ours: it did not exist before


def stop(process: subprocess.Popen, grace: float = 5.0) -> None:
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
