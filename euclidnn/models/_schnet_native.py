"""SchNet's C kernel (``_schnet_kernel.c``): energy and forces in one call, and its radial basis.

Built once per machine like the convolution kernel (:func:`euclidnn.o3._native.compile_library`);
where it cannot be built, or under ``EUCLIDNN_NATIVE=0``, :meth:`SchNet.energy_and_forces` runs
its PyTorch code instead. The kernel's matrix products call the BLAS that PyTorch links (its
``sgemm_`` / ``dgemm_`` symbols); a PyTorch build without them gets the PyTorch path too.

Why: for a 9-atom molecule the PyTorch version of the call is ~150 tensor operations of a few
microseconds of overhead each, about twice the arithmetic. See ``bench/RESULTS.md``.
"""

from __future__ import annotations

import ctypes
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from euclidnn.o3._native import compile_library

if TYPE_CHECKING:
    from euclidnn.models.schnet import SchNet

_SOURCE = Path(__file__).with_name("_schnet_kernel.c")
_LIB: ctypes.CDLL | None | bool = False  # False: not tried yet; None: unavailable
_GEMM: dict[torch.dtype, int] = {}  # address of PyTorch's BLAS ?gemm_ per dtype
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _build() -> ctypes.CDLL | None:
    # -fno-math-errno lets the elementwise loops call libmvec's vector exp and log1p
    lib = compile_library(
        _SOURCE, "PyTorch SchNet", extra_flags=["-fno-math-errno"], libs=["-lmvec", "-lm"]
    )
    if lib is None:
        return None
    p, i64, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    for suffix in _SUFFIX.values():
        fn = getattr(lib, f"schnet_radial_{suffix}")
        fn.argtypes = [i64, i64, p, p, f64, f64, f64, p, p, p, p, ctypes.c_int]
        fn.restype = None
        fn = getattr(lib, f"schnet_energy_forces_{suffix}")
        fn.argtypes = [p, p, f64, f64, f64, p, p, p]
        fn.restype = ctypes.c_int
    try:
        torch_cpu = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        for dtype, name in ((torch.float32, "sgemm_"), (torch.float64, "dgemm_")):
            _GEMM[dtype] = ctypes.cast(getattr(torch_cpu, name), ctypes.c_void_p).value
    except (OSError, AttributeError):  # another platform or BLAS: radial() still works
        _GEMM.clear()
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded SchNet kernel, or ``None`` where it cannot be built (built on first call)."""
    global _LIB
    if _LIB is False:
        try:
            _LIB = _build()
        except Exception as err:  # no home directory, a library that won't load …
            warnings.warn(
                f"euclidnn: the C SchNet kernel is unavailable ({type(err).__name__}: {err}); "
                "using the slower PyTorch SchNet",
                stacklevel=2,
            )
            _LIB = None
    return _LIB


def _usable(t: Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype in _SUFFIX and not torch.compiler.is_compiling()


def radial(
    r: Tensor, mu: Tensor, gamma: float, r_max: float
) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    """SchNet's Gaussians e, cutoff fc and their r-derivatives in one kernel call, or None where
    the kernel is unavailable (the caller computes them with PyTorch).

    Shapes: r: [n], mu: [K] → (e [n, K], de/dr [n, K], fc [n], dfc/dr [n])
    """
    if not _usable(r) or library() is None:
        return None
    r, mu = r.contiguous(), mu.to(r.dtype).contiguous()
    n, k = r.shape[0], mu.shape[0]
    e, de = r.new_empty(n, k), r.new_empty(n, k)
    fc, dfc = r.new_empty(n), r.new_empty(n)
    getattr(library(), f"schnet_radial_{_SUFFIX[r.dtype]}")(
        n,
        k,
        r.data_ptr(),
        mu.data_ptr(),
        gamma,
        r_max,
        math.log(torch.finfo(r.dtype).tiny),
        e.data_ptr(),
        de.data_ptr(),
        fc.data_ptr(),
        dfc.data_ptr(),
        torch.get_num_threads(),
    )
    return e, de, fc, dfc


def energy_and_forces(
    model: SchNet,
    positions: Tensor,
    rows: tuple[Tensor, Tensor, Tensor | None],
    edges,
    batch: Tensor,
    species: Tensor,
    num_graphs: int,
    mu: Tensor,
    gamma: float,
) -> tuple[Tensor, Tensor] | None:
    """The whole of :meth:`SchNet.energy_and_forces` in one kernel call, or None where it
    cannot run here (no kernel or BLAS, not on CPU, parameters of another dtype).

    rows: (src, dst, S·cell or None) of each filter row (undirected pair); edges: the graph's
    :class:`~euclidnn.o3._native.Edges` with ``weight_row`` = the pair of each edge.
    """
    dtype = positions.dtype
    if not _usable(positions) or library() is None or dtype not in _GEMM:
        return None
    its = model.interactions
    weights = [
        model.embedding.weight,
        model.readout1.weight,
        model.readout1.bias,
        model.readout2.weight,
        model.readout2.bias,
        model.scale_shift.scales.to(dtype),
        model.scale_shift.shifts.to(dtype),
    ]
    for it in its:
        weights += [
            it.filter1.weight,
            it.filter1.bias,
            it.filter2.weight,
            it.filter2.bias,
            it.in2filter.weight,
            it.out1.weight,
            it.out1.bias,
            it.out2.weight,
            it.out2.bias,
        ]
    if any(w.dtype != dtype or w.device.type != "cpu" for w in weights):
        return None
    weights = [w.contiguous() for w in weights]
    src_p, dst_p, offset = rows
    index = (src_p, dst_p, batch, species, edges.src, edges.dst, edges.weight_row)
    if any(t.dtype != torch.int64 for t in index):
        return None
    if offset is not None:
        offset = offset.to(dtype).contiguous()
    positions = positions.contiguous()
    tensors = [
        positions,
        offset,
        src_p,
        dst_p,
        batch.contiguous(),
        species.contiguous(),
        edges.src,
        edges.dst,
        edges.weight_row,
        *edges.by_dst,
        *edges.by_src,
        *edges.by_weight_row,
        mu.to(dtype).contiguous(),
        *weights,
    ]
    pointers = (ctypes.c_void_p * len(tensors))(
        *(None if t is None else t.data_ptr() for t in tensors)
    )
    n = positions.shape[0]
    width = its[0].filter2.in_features
    dims = (ctypes.c_int64 * 10)(
        n,
        src_p.shape[0],
        edges.num_edges,
        num_graphs,
        len(its),
        model.embedding.weight.shape[1],
        width,
        its[0].filter1.in_features,
        model.readout1.out_features,
        torch.get_num_threads(),
    )
    energy = positions.new_empty(num_graphs)
    forces = positions.new_empty(n, 3)
    status = getattr(library(), f"schnet_energy_forces_{_SUFFIX[dtype]}")(
        dims,
        pointers,
        gamma,
        model.config.r_max,
        math.log(torch.finfo(dtype).tiny),
        _GEMM[dtype],
        energy.data_ptr(),
        forces.data_ptr(),
    )
    if status != 0:
        raise MemoryError(f"SchNet kernel: no memory for the workspace of {n} atoms")
    return energy, forces
