"""Serve a model's forces to i-PI over its socket protocol (ASE's ``SocketClient``).

:func:`serve` serves any ASE calculator; :func:`serve_model` a model file, and is what a force
client of :func:`~euclidnn.md.run_pimd` (``python -m euclidnn.md.client``) and
``euclidnn serve`` run.

An address is ``HOST:PORT`` (TCP, so clients on other machines can evaluate beads) or a name
(a UNIX socket, ``/tmp/ipi_<name>``, i-PI's and ASE's convention).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from ase import Atoms

__all__ = ["Address", "check_address_free", "serve", "serve_model"]

UNIX_PREFIX = "/tmp/ipi_"  # where i-PI and ASE put a UNIX socket named NAME


@dataclass(frozen=True)
class Address:
    """Where i-PI listens: a TCP ``host`` and ``port``, or a UNIX socket ``name``.

    >>> Address.parse("localhost:31415")
    Address(name=None, host='localhost', port=31415)
    >>> Address.parse("c20_run").path
    PosixPath('/tmp/ipi_c20_run')
    """

    name: str | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> Address:
        """``HOST:PORT`` → TCP, anything else → a UNIX socket name."""
        host, sep, port = text.rpartition(":")
        if sep and port.isdigit():
            if not 0 < int(port) < 65536:
                raise ValueError(f"--address {text}: port must be in 1..65535")
            return cls(host=host or "localhost", port=int(port))
        if not text or "/" in text or text != text.strip():
            raise ValueError(f"--address {text!r}: give HOST:PORT or a socket name without '/'")
        return cls(name=text)

    @property
    def is_unix(self) -> bool:
        """True for a UNIX socket."""
        return self.name is not None

    @property
    def path(self) -> Path | None:
        """The socket file of a UNIX address."""
        return Path(UNIX_PREFIX + self.name) if self.is_unix else None

    def __str__(self) -> str:
        return self.name if self.is_unix else f"{self.host}:{self.port}"


def check_address_free(address: Address) -> None:
    """Raise ``ValueError`` if i-PI could not listen at ``address``: a UNIX socket file that
    exists (stale, from a run that did not exit cleanly, or in use by a running server) or a
    TCP port in use."""
    if address.is_unix:
        path = address.path
        if not os.path.lexists(path):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            raise ValueError(
                f"{path}: stale socket left by an earlier run that did not exit cleanly "
                f"(nothing listens on it); remove it (rm {path}) or use another --address"
            ) from None
        finally:
            probe.close()
        raise ValueError(f"{path}: in use by a running i-PI server; use another --address")
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind((address.host, address.port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ValueError(f"--address {address}: port {address.port} is in use") from None
        raise ValueError(f"--address {address}: cannot listen there ({error})") from None
    finally:
        probe.close()


def serve(
    atoms: Atoms,
    calculator,
    address: Address,
    *,
    connect_timeout: float = 60.0,
    log=None,
) -> int:
    """Evaluate forces for i-PI at ``address`` until it says EXIT or closes the connection.

    ``atoms`` gives the species (i-PI sends only positions and cell); ``calculator`` is any ASE
    calculator, e.g. :class:`~euclidnn.md.Calculator`. Connection attempts are repeated for
    ``connect_timeout`` s (≥ 0), so a client may start before the server; then
    ``ConnectionError`` says where nothing listened. Returns the number of force evaluations.
    """
    from ase.calculators.socketio import SocketClient, SocketClosed

    if not connect_timeout >= 0:  # NaN too
        raise ValueError(f"connect_timeout: must be ≥ 0 s, got {connect_timeout}")
    atoms = atoms.copy()
    atoms.calc = calculator
    deadline = time.monotonic() + connect_timeout
    while True:
        try:
            if address.is_unix:
                client = SocketClient(unixsocket=address.name, log=log)
            else:
                client = SocketClient(host=address.host, port=address.port, log=log)
            break
        except (ConnectionRefusedError, FileNotFoundError) as error:
            if time.monotonic() > deadline:
                where = f"socket {address.path}" if address.is_unix else f"{address}"
                why = error.strerror.lower() if error.strerror else type(error).__name__
                raise ConnectionError(
                    f"no i-PI server listening at {where} after {connect_timeout:g} s of "
                    f"trying ({why}): is the PIMD run (`euclidnn md … --ensemble pimd "
                    "--no-local-clients`) running, with this --address?"
                ) from None
            time.sleep(0.05)
    calls = 0
    try:
        for _ in client.irun(atoms, use_stress=bool(atoms.pbc.all())):
            calls += 1
    except (SocketClosed, ConnectionError, BrokenPipeError):
        pass  # the server went away: nothing left to serve
    finally:
        client.close()
    return calls


def serve_model(
    model: torch.nn.Module | str | os.PathLike,
    structure: Atoms | str | os.PathLike,
    address: Address,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    connect_timeout: float = 60.0,
) -> int:
    """Serve the forces of ``model`` (a model or its ``.safetensors`` file) on ``structure``
    (``ase.Atoms``, a structure file or a molecule name:
    :func:`~euclidnn.data.molecules.load_molecule`) to i-PI at ``address``, through
    :class:`~euclidnn.md.Calculator` in ``dtype`` on ``device``; see :func:`serve`. Returns the
    number of force evaluations."""
    from euclidnn.data.geometry_checks import check_positions
    from euclidnn.data.molecules import load_molecule
    from euclidnn.md.calculator import Calculator

    atoms = structure if isinstance(structure, Atoms) else load_molecule(structure)
    where = atoms.get_chemical_formula() if isinstance(structure, Atoms) else str(structure)
    check_positions(atoms, where)
    calculator = Calculator(model, dtype=dtype, device=device)
    return serve(atoms, calculator, address, connect_timeout=connect_timeout)
