"""SchNet inference with and without its C kernel (``euclidnn/kernels/_schnet.c``), in one process.

    .venv/bin/python bench/schnet_kernel.py [--repeats 10]

``SchNet.energy_and_forces`` on the systems and hyperparameters of ``bench/models.py``, once as
one C call (the default) and once as its reference, autograd through ``SchNet.forward`` (with
the convolution kernel), interleaved; medians and the ratio. An ablation of our own code: the
peer comparison is ``bench/models.py``.
"""

from __future__ import annotations

import argparse

import torch
from machine import header
from models import compare, ours_input, ours_schnet, systems

from euclidnn import kernels


class _Unavailable:
    """A library that is not there: the SchNet kernel's caller runs its reference (autograd)."""

    def get(self):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(header(), flush=True)
    torch.manual_seed(0)
    model = ours_schnet()
    real = kernels.schnet.LIBRARY
    print(f"torch {torch.__version__}, threads 2, float32\n")
    print(f"{'system':16s} {'C kernel ms':>12s} {'autograd ms':>11s} {'ratio':>7s}")
    for name, atoms in systems().items():
        graph = ours_input(atoms)

        def run(fused: bool, graph=graph):
            library = real if fused else _Unavailable()

            def call():
                kernels.schnet.LIBRARY = library
                return model.energy_and_forces(graph)

            return call

        fused, plain = compare(run(True), run(False), args.repeats)
        print(f"{name:16s} {fused:12.3f} {plain:11.3f} {plain / fused:6.2f}x")
    kernels.schnet.LIBRARY = real


if __name__ == "__main__":
    main()
