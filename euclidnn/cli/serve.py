"""Serve a model's forces to an i-PI server (i-PI's socket protocol, ASE's SocketClient), so
that beads of a path-integral run are evaluated on this machine. Exits when i-PI is done.

Example: euclidnn serve model.safetensors structure.xyz --address head-node:31415
"""

from __future__ import annotations

import argparse

from euclidnn.cli.md import device_argument, seconds_argument, threads_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn serve``."""
    parser.add_argument("model", help="model file (.safetensors) written by euclidnn")
    parser.add_argument(
        "structure",
        help="the structure i-PI runs (its species; i-PI sends only positions and cell), e.g. "
        "RUN_DIR/structure.xyz",
    )
    parser.add_argument(
        "--address", required=True, help="HOST:PORT of i-PI (TCP) or a UNIX socket name"
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None)
    parser.add_argument(
        "--device", type=device_argument, default=None, help="cpu, cuda, … (default: the model's)"
    )
    parser.add_argument(
        "--threads",
        type=threads_argument,
        default=1,
        help="PyTorch threads (default 1, as `euclidnn md`: fastest for molecules, and no "
        "spinning threads on a machine other jobs share; raise it for large cells)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=seconds_argument,
        default=60.0,
        help="s to keep trying to connect, ≥ 0 (60)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn serve`` (:func:`euclidnn.md.serve.serve_model`, as md's own clients)."""
    import torch

    from euclidnn.md.serve import Address, serve_model

    address = Address.parse(args.address)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    calls = serve_model(
        args.model,
        args.structure,
        address,
        dtype=dtype,
        device=args.device,
        connect_timeout=args.connect_timeout,
    )
    print(f"euclidnn serve: {calls} force evaluations for i-PI at {address}")
    return 0
