"""The force client that :func:`~euclidnn.md.run_pimd` starts, one process per client:

    python -m euclidnn.md.client MODEL STRUCTURE --address ADDRESS [--dtype/--device/--threads]

It serves the model's forces to i-PI (:func:`~euclidnn.md.serve.serve_model`) until i-PI is
done, then prints how many it evaluated. md's own entry point, so that md starts no command
of the CLI (a floor above it); ``euclidnn serve`` calls the same function.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), serve, and return the exit status."""
    import torch

    from euclidnn.md.serve import Address, serve_model

    parser = argparse.ArgumentParser(
        prog="python -m euclidnn.md.client",
        description="Serve a model's forces to i-PI (a force client of run_pimd).",
    )
    parser.add_argument("model", help="model file (.safetensors)")
    parser.add_argument("structure", help="the structure i-PI runs (its species), e.g. xyz")
    parser.add_argument("--address", required=True, help="HOST:PORT or a UNIX socket name")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda, … (default: the model's)")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch threads")
    parser.add_argument("--connect-timeout", type=float, default=60.0, help="s (default 60)")
    args = parser.parse_args(argv)
    address = Address.parse(args.address)
    if args.threads:
        torch.set_num_threads(args.threads)  # this process's own setting: it serves, then exits
    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    calls = serve_model(
        args.model,
        args.structure,
        address,
        dtype=dtype,
        device=args.device,
        connect_timeout=args.connect_timeout,
    )
    print(f"euclidnn.md.client: {calls} force evaluations for i-PI at {address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
