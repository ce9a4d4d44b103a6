"""The machine a benchmark ran on, as one header line: the same code gives different ratios on
different CPUs (issue 24: the tensor-product rows against e3nn moved from 1.2× to 0.8× between
two 2-core machines), so every benchmark prints this first.

    # machine: AMD EPYC, 2 logical CPUs, ISA avx2 avx512f avx512bw avx512vl avx512_bf16; torch
    #   2.13.0+cpu (kernels: AVX512, BLAS: mkl, OpenMP), 2 threads; load average 0.31 (1 min)

Only the standard library and torch; nothing here changes a setting.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

# the vector instruction sets that decide which kernels MKL, oneDNN and PyTorch run
_ISA = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
        "amx_tile", "amx_bf16", "neon", "asimd", "sve", "sve2")  # fmt: skip


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere ``platform``'s answer)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa_flags() -> list[str]:
    """Which of the vector instruction sets that matter here the CPU reports (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    found = re.search(r"^(?:flags|Features)\s*:(.*)$", text, re.MULTILINE)
    flags = set(found.group(1).split()) if found else set()
    return [isa for isa in _ISA if isa in flags]


def torch_build() -> str:
    """PyTorch's version, the CPU kernels it dispatches to, its BLAS and its OpenMP."""
    import torch

    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    capability = torch.backends.cpu.get_cpu_capability()
    openmp = "OpenMP" if "OpenMP" in config else "no OpenMP"
    return (f"torch {torch.__version__} (kernels: {capability}, BLAS: "
            f"{blas.group(1) if blas else '?'}, {openmp}), {torch.get_num_threads()} threads")  # fmt: skip


def header() -> str:
    """One ``# machine: …`` line: CPU, instruction sets, torch build and threads, load."""
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"
    settings = [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_ENABLE_INSTRUCTIONS",
                                                 "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")
                if k in os.environ]  # fmt: skip
    return (f"# machine: {cpu_model()}, {os.cpu_count()} logical CPUs, ISA {' '.join(isa_flags())}; "
            f"{torch_build()}; python {platform.python_version()}; load average {load} (1 min)"
            + (f"; {' '.join(settings)}" if settings else ""))  # fmt: skip


if __name__ == "__main__":
    print(header())
