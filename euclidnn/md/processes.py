"""Child processes (the i-PI server, force clients) that are stopped on every way out.

Each child runs in its own process group (a Ctrl-C at the terminal reaches only us) with its
output in a log file. :class:`Processes` is a context manager: leaving it — success, error,
Ctrl-C (SIGINT) or SIGTERM — sends SIGTERM to each child's group, SIGKILL after a grace
period, waits for each, and removes the UNIX socket file of the run.

Signals, while it is open (main thread): the first SIGINT raises ``KeyboardInterrupt`` and
the first SIGTERM ``SystemExit(143)``, so that the cleanup runs; from then on both are
ignored until the cleanup is done, so a second Ctrl-C cannot cut it short and orphan a child.
A signal that arrives while a child is being started is held until the child is registered
(otherwise a child forked just then would be stopped by nobody).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from euclidnn.md.serve import Address

__all__ = ["Child", "Processes", "stop"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
    """Children in their own process groups, stopped (TERM, then KILL) when the ``with``
    block ends, however it ends (see the module's docstring for signals).

    >>> with Processes(Address(name="doc")) as processes:
    ...     child = processes.start(["sleep", "60"], Path("."), os.devnull)
    >>> child.poll()  # stopped by SIGTERM when the block ended
    -15
    """

    def __init__(self, address: Address) -> None:
        self.address = address
        self.children: list[Child] = []
        self._stopping = False  # cleanup under way: SIGINT and SIGTERM are ignored
        self._holding = False  # a child is being started: a signal waits in _held
        self._held: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Processes:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._on_signal) for s in _SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopping = True  # first: a signal from here on must not cut the cleanup short
        try:
            self.close()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame) -> None:
        if self._stopping:
            return
        if self._holding:
            self._held = self._held or signum
            return
        self._stopping = True
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    @contextmanager
    def _signals_held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            if self._held is not None:
                self._on_signal(self._held, None)

    def start(
        self, command: list[str], cwd: Path, log_name: str, env: dict[str, str] | None = None
    ) -> Child:
        """Start ``command`` in ``cwd``, in a new process group, output to ``cwd/log_name``
        (``env``: its environment, default ours)."""
        with self._signals_held():  # between fork and our list, a child is nobody's to stop
            log = open(cwd / log_name, "w")
            try:
                process = subprocess.Popen(
                    command,
                    cwd=cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
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
                raise ChildProcessError(f"i-PI exited with code {code}: see {server.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"i-PI did not open {self.address.path} in {timeout:g} s")
            time.sleep(0.02)

    def close(self) -> None:
        """Stop every child (clients first, then the server) and wait for it, close the logs,
        and remove the UNIX socket file. Idempotent: a second call finds nothing to do."""
        for child in reversed(self.children):
            stop(child.process)
        for child in self.children:
            child.log.close()
        if self.address.is_unix and self.children:
            self.address.path.unlink(missing_ok=True)  # ours: it did not exist before


def stop(process: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM to the process group of ``process``, SIGKILL if it is still there after
    ``grace`` s; returns once ``process`` is reaped, and after a SIGKILL to what is left of its
    group (a grandchild that outlived it), so nothing of it runs on."""
    if process.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    process.wait()  # reaped, whichever way it went
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the group outlives its leader in a grandchild
    except (ProcessLookupError, PermissionError):
        pass
