"""The boundary between PyTorch and C: when the fused path may run, and the checks every
argument passes before a pointer to it is taken.

The rule: a C kernel only ever sees contiguous tensors of the dtype it was compiled for, on
the CPU, kept alive by the caller until the call returns, with every index in range. Anything
the fused path does not support (another device or dtype, tracing by ``torch.compile``,
``EUCLIDNN_NATIVE=0``, a library that did not build) runs the PyTorch reference instead, which
raises PyTorch's own errors for inconsistent inputs.

A trace (``torch.jit.trace``) cannot record a ctypes call, so it records the reference, unless
it runs inside :func:`recording_ops`: then a kernel with a TorchScript custom op
(:mod:`euclidnn.kernels.ops`) is recorded as that op, which C++ runs from the same C source.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator

import torch
from torch import Tensor

from euclidnn.kernels.build import Library

__all__ = [
    "float_tensor",
    "fused_library",
    "index_tensor",
    "native_enabled",
    "op_library",
    "recording_ops",
]

FLOAT_DTYPES = (torch.float32, torch.float64)
INDEX_DTYPES = (torch.int32, torch.int64)
_RECORDING = threading.local()  # .on: inside recording_ops() on this thread


def native_enabled() -> bool:
    """Whether fast paths may run at all: ``EUCLIDNN_NATIVE`` is not ``"0"``. A model whose
    fast path is plain PyTorch (a restructured computation of the same numbers, such as
    Allegro's) asks this; ``EUCLIDNN_NATIVE=0`` runs every model's reference."""
    return os.environ.get("EUCLIDNN_NATIVE", "1") != "0"


def fused_library(library: Library, *tensors: Tensor | None) -> ctypes.CDLL | None:
    """The loaded ``library`` where its fused path may run on these (floating-point) tensors,
    else ``None`` (the caller runs its PyTorch reference).

    The one place where the choice is made. The fused path runs when ``EUCLIDNN_NATIVE`` is
    not ``"0"``, nothing is being traced by ``torch.compile`` or ``torch.jit.trace`` (a ctypes
    call does not trace: the compiler fuses the reference anyway, and a TorchScript export
    records the reference's operations or, with :func:`op_library`, the kernel's custom op),
    every given tensor is on the CPU with one dtype, float32 or float64, and the library
    builds and loads.
    """
    if not native_enabled() or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None
    return library.get() if _fits(tensors) else None


def _fits(tensors: tuple[Tensor | None, ...]) -> bool:
    """Every given tensor on the CPU, with one dtype, float32 or float64."""
    present = [t for t in tensors if t is not None]
    dtype = present[0].dtype
    return dtype in FLOAT_DTYPES and all(t.dtype == dtype and t.is_cpu for t in present)


@contextlib.contextmanager
def recording_ops() -> Iterator[None]:
    """Within this block (on this thread), a trace by ``torch.jit.trace`` records a kernel that
    has a TorchScript custom op as that op (:func:`op_library`) instead of the PyTorch
    reference; the previous setting is restored on exit. What ``euclidnn export`` traces in,
    unless asked for a portable file.

    >>> with recording_ops():
    ...     pass
    """
    previous = getattr(_RECORDING, "on", False)
    _RECORDING.on = True
    try:
        yield
    finally:
        _RECORDING.on = previous


def op_library(library: Library, *tensors: Tensor | None) -> ctypes.CDLL | None:
    """The loaded ``library`` where a trace should record the kernel's custom op on these
    tensors, else ``None``: while ``torch.jit.trace`` runs inside :func:`recording_ops`,
    ``EUCLIDNN_NATIVE`` is not ``"0"``, the tensors are as :func:`fused_library` needs them and
    the library loads (the op runs it while the trace records)."""
    if (
        not getattr(_RECORDING, "on", False)
        or not torch.jit.is_tracing()
        or os.environ.get("EUCLIDNN_NATIVE", "1") == "0"
    ):
        return None
    return library.get() if _fits(tensors) else None


def float_tensor(t: Tensor, name: str, shape: tuple[int, ...]) -> Tensor:
    """``t`` as a contiguous tensor of exactly ``shape`` (a copy where it is strided or
    expanded; the caller keeps the result alive until the C call returns)."""
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {list(shape)}, got {list(t.shape)}")
    return t.contiguous()


def index_tensor(
    t: Tensor, name: str, size: int, length: int | None = None, *, check_range: bool = True
) -> Tensor:
    """A private contiguous int64 copy of the 1-d index tensor ``t`` whose values are checked
    to lie in 0 … size − 1.

    int32 indices are converted; other dtypes raise ``TypeError`` and values out of range
    ``IndexError`` (as PyTorch's indexing does). ``check_range=False`` leaves the range to a
    kernel that checks it itself before it reads anything (for per-call indices of a few
    hundred entries, cheaper than the reductions here).
    """
    if t.dtype not in INDEX_DTYPES:
        raise TypeError(f"{name}: indices must be int64 or int32, got {t.dtype}")
    if t.dim() != 1 or (length is not None and t.shape[0] != length):
        want = f"[{length}]" if length is not None else "1-d"
        raise ValueError(f"{name}: expected shape {want}, got {list(t.shape)}")
    if not t.is_cpu:
        raise ValueError(f"{name}: the CPU kernels take CPU indices, got {t.device}")
    if check_range and t.numel():
        low, high = (int(v) for v in torch.aminmax(t))
        if low < 0 or high >= size:
            bad = low if low < 0 else high
            raise IndexError(f"{name}: index {bad} is out of range for {size} rows")
    return t.to(torch.int64, memory_format=torch.contiguous_format, copy=True)
