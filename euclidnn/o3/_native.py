"""The fused CPU convolution kernel (``_conv_kernel.c``): build, load, and wire into autograd.

:meth:`euclidnn.o3.TensorProduct.convolve` uses it for "uvu" paths with a multiplicity-1 second
input (spherical harmonics) and per-edge weights on CPU tensors; everything else takes the
plain PyTorch path. The C source is compiled once per machine with the system C compiler
(``cc -O3 -march=native -fopenmp``) into ``$EUCLIDNN_CACHE`` (default
``~/.cache/euclidnn``), keyed by a hash of the source, the compiler and the CPU, and written
atomically. Without a compiler (one warning), or with ``EUCLIDNN_NATIVE=0``, the PyTorch path
runs instead.

Why: the PyTorch path materializes each edge's message ([n_edges, irreps_out.dim]) several
times over (products, concatenation, gather of the gradient); the kernel reads an edge's
weights and spherical harmonics once and accumulates straight into the atom's row. See
``bench/RESULTS.md``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

_SOURCE = Path(__file__).with_name("_conv_kernel.c")
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
_LIB: ctypes.CDLL | None | bool = False  # False: not tried yet; None: unavailable


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return "".join(line for line in f if line.startswith(("model name", "flags")))[:4096]
    except OSError:
        return platform.processor()


def compile_library(
    source: Path, what: str, extra_flags: Sequence[str] = (), libs: Sequence[str] = ("-lm",)
) -> ctypes.CDLL | None:
    """Build ``source`` (a C file) into a shared library once per machine and load it.

    The library goes to ``$EUCLIDNN_CACHE`` (default ``~/.cache/euclidnn``) under a name keyed
    by a hash of the source, the compiler, the flags and the CPU, written atomically. Returns
    ``None`` (with one warning naming ``what`` falls back) where there is no compiler or the
    build fails, and under ``EUCLIDNN_NATIVE=0``.
    """
    if os.environ.get("EUCLIDNN_NATIVE", "1") == "0":
        return None
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        warnings.warn(f"euclidnn: no C compiler ({cc!r}); using the slower {what}", stacklevel=3)
        return None
    text = source.read_bytes()
    try:
        version = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        version = ""
    flags = [*_FLAGS, *extra_flags]
    key = hashlib.sha256(
        text + version.encode() + " ".join([*flags, *libs]).encode() + _cpu_id().encode()
    ).hexdigest()
    cache = Path(os.environ.get("EUCLIDNN_CACHE", Path.home() / ".cache" / "euclidnn"))
    target = cache / f"{source.stem.lstrip('_')}_{key[:16]}.so"
    if not target.exists():
        try:
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                out = Path(tmp) / target.name
                subprocess.run(
                    [cc, *flags, str(source), "-o", str(out), *libs],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                os.replace(out, target)  # atomic: concurrent builds leave one complete file
        except (OSError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", "") or str(err)
            warnings.warn(
                f"euclidnn: building {source.name} failed ({detail.strip()[:500]}); "
                f"using the slower {what}",
                stacklevel=3,
            )
            return None
    return ctypes.CDLL(str(target))


def _build() -> ctypes.CDLL | None:
    lib = compile_library(_SOURCE, "PyTorch convolution")
    if lib is None:
        return None
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for name in ("uvu_conv_f32", "uvu_conv_f64"):
        fn = getattr(lib, name)
        fn.argtypes = [i32, i64, i64, p, p, p, p, p, p, p, p, p, i64, i64, i64, i64, p, p, i64, i32]
        fn.restype = None
    for name in ("uvu_conv_backward_f32", "uvu_conv_backward_f64"):
        fn = getattr(lib, name)
        fn.argtypes = [
            i64,
            i64,
            i64,
            p,
            p,
            p,
            p,
            p,
            p,
            p,
            p,
            p,
            p,
            p,
            p,
            p,
            i64,
            i64,
            i64,
            i64,
            p,
            p,
            i64,
            i32,
        ]
        fn.restype = None
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, or ``None`` where it cannot be built (built on first call)."""
    global _LIB
    if _LIB is False:
        try:
            _LIB = _build()
        except Exception as err:  # no home directory, read-only cache, a library that won't load …
            warnings.warn(
                f"euclidnn: the C convolution kernel is unavailable ({type(err).__name__}: {err}); "
                "using the slower PyTorch convolution",
                stacklevel=2,
            )
            _LIB = None
    return _LIB


def to_ir_mul(irreps) -> Tensor:
    """Column permutation from e3nn's layout to "ir_mul": ``x[:, perm]`` puts component i of
    channel u of a term at offset i·mul + u instead of u·dim + i.

    Shapes: → [irreps.dim]
    """
    pieces, offset = [], 0
    for mul, ir in irreps:
        pieces.append(torch.arange(mul * ir.dim).view(mul, ir.dim).t().reshape(-1) + offset)
        offset += mul * ir.dim
    return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.int64)


class ConvSpec:
    """The entries of the quadrilinear form for one TensorProduct (see ``_conv_kernel.c``) and
    the column permutations into (``perm_in``) and out of (``perm_out``) the kernel's layout."""

    def __init__(
        self,
        entries: Tensor,
        coefficients: Tensor,
        dims: tuple[int, int, int, int],
        perm_in: Tensor,
        perm_out: Tensor,
    ) -> None:
        identity = lambda p: bool((p == torch.arange(p.shape[0])).all())  # noqa: E731
        self.perm_in = None if identity(perm_in) else perm_in
        self.perm_out = None if identity(perm_out) else perm_out
        self.entries = entries.to(torch.int64).contiguous()  # [n, 5]
        self.coefficients = {
            torch.float64: coefficients.to(torch.float64).contiguous(),
            torch.float32: coefficients.to(torch.float32).contiguous(),
        }
        self.dims = dims  # (dim x1, dim x2, weight_numel, dim out)
        self.num_entries = self.entries.shape[0]  # (no pointers or ctypes here: specs are
        # deep-copied and pickled with their models)


_LAST_EDGES: list = []  # the most recent Edges, reused while the same index tensors come back


def edges_for(
    edge_src: Tensor,
    edge_dst: Tensor,
    num_nodes: int,
    num_src: int,
    weight_row: Tensor | None = None,
    num_weight_rows: int | None = None,
) -> Edges:
    """:class:`Edges` for these index tensors, cached for the next call with the same tensors
    (every layer of a model passes the same graph)."""
    key = (edge_src, edge_dst, weight_row)
    sizes = (num_nodes, num_src, num_weight_rows)
    versions = tuple(t._version for t in key if t is not None)
    if _LAST_EDGES:
        last_key, last_sizes, last_versions, edges = _LAST_EDGES
        if all(a is b for a, b in zip(last_key, key)) and (last_sizes, last_versions) == (
            sizes,
            versions,
        ):
            return edges
    edges = Edges(edge_src, edge_dst, num_nodes, num_src, weight_row, num_weight_rows)
    _LAST_EDGES[:] = [key, sizes, versions, edges]
    return edges


class Edges:
    """Edge list with the visiting orders the kernel needs: by destination, by source and, when
    edges share weight rows (``weight_row[e]``), by weight row."""

    def __init__(
        self,
        edge_src: Tensor,
        edge_dst: Tensor,
        num_nodes: int,
        num_src: int,
        weight_row: Tensor | None = None,
        num_weight_rows: int | None = None,
    ) -> None:
        self.src = edge_src.contiguous()
        self.dst = edge_dst.contiguous()
        self.num_nodes, self.num_src = num_nodes, num_src
        self.by_dst = self._csr(self.dst, num_nodes)
        self.by_src = self._csr(self.src, num_src)
        self.weight_row = None if weight_row is None else weight_row.contiguous()
        self.num_weight_rows = self.src.shape[0] if weight_row is None else num_weight_rows
        self.by_weight_row = (
            None if weight_row is None else self._csr(self.weight_row, num_weight_rows)
        )
        self.num_edges = self.src.shape[0]
        self._ones: dict[torch.dtype, Tensor] = {}
        self.rows = (num_src, self.num_edges, self.num_weight_rows, num_nodes)  # per slot
        ends = (self.src.data_ptr(), self.dst.data_ptr())
        row_ptr = None if self.weight_row is None else self.weight_row.data_ptr()
        csr = [self.by_dst, self.by_src, self.by_weight_row, None]  # per kernel mode
        self.pointers = [
            (*ends, *((None, None) if c is None else (c[0].data_ptr(), c[1].data_ptr())), row_ptr)
            for c in csr
        ]

    def ones(self, dtype: torch.dtype) -> Tensor:
        """[n_edges, 1] ones (the spherical-harmonics slot of a continuous-filter convolution)."""
        if dtype not in self._ones:
            self._ones[dtype] = torch.ones(self.num_edges, 1, dtype=dtype)
        return self._ones[dtype]

    @staticmethod
    def _csr(index: Tensor, size: int) -> tuple[Tensor, Tensor]:
        order = torch.argsort(index, stable=True)
        ptr = torch.zeros(size + 1, dtype=torch.int64)
        ptr[1:] = torch.cumsum(torch.bincount(index, minlength=size), 0)
        return order, ptr


_MODE = (1, 3, 2, 0)  # kernel mode computing each slot (x, y, w, g)


def _run(spec: ConvSpec, edges: Edges, slot: int, args: list[Tensor | None]) -> Tensor:
    """Compute ∂Q/∂(args[slot]) from the other three arguments (tiny call overhead: this runs
    several times per layer)."""
    dtype = (args[0] if args[0] is not None else args[1]).dtype
    rows = edges.rows[slot]
    out = torch.zeros(rows, spec.dims[slot], dtype=dtype)
    if edges.num_edges == 0 or spec.num_entries == 0:
        return out
    mode = _MODE[slot]
    x, y, w, g = ((out if a is None else a.contiguous()).data_ptr() for a in args)
    src, dst, order, ptr, weight_row = edges.pointers[mode]
    lib = library()
    (lib.uvu_conv_f64 if dtype == torch.float64 else lib.uvu_conv_f32)(
        mode,
        rows if mode != 3 else edges.num_edges,
        edges.num_edges,
        src,
        dst,
        order,
        ptr,
        weight_row,
        x,
        y,
        w,
        g,
        *spec.dims,
        spec.entries.data_ptr(),
        spec.coefficients[dtype].data_ptr(),
        spec.num_entries,
        torch.get_num_threads(),
    )
    return out


def run_backward(
    spec: ConvSpec, edges: Edges, x: Tensor, y: Tensor, w: Tensor, g: Tensor
) -> tuple[Tensor, Tensor]:
    """(∂Q/∂x, ∂Q/∂w) in one kernel call, no autograd (hand-written backward passes)."""
    gx = torch.zeros(edges.rows[0], spec.dims[0], dtype=x.dtype)
    gw = torch.zeros(edges.rows[2], spec.dims[2], dtype=x.dtype)
    if edges.num_edges == 0 or spec.num_entries == 0:
        return gx, gw
    x, y, w, g = (t.contiguous() for t in (x, y, w, g))
    src, dst, order_src, ptr_src, weight_row = edges.pointers[1]
    _, _, order_row, ptr_row, _ = edges.pointers[2]
    lib = library()
    (lib.uvu_conv_backward_f64 if x.dtype == torch.float64 else lib.uvu_conv_backward_f32)(
        edges.rows[0],
        edges.rows[2],
        edges.num_edges,
        src,
        dst,
        order_src,
        ptr_src,
        order_row,
        ptr_row,
        weight_row,
        x.data_ptr(),
        gx.data_ptr(),
        y.data_ptr(),
        w.data_ptr(),
        gw.data_ptr(),
        g.data_ptr(),
        *spec.dims,
        spec.entries.data_ptr(),
        spec.coefficients[x.dtype].data_ptr(),
        spec.num_entries,
        torch.get_num_threads(),
    )
    return gx, gw


class _Quad(torch.autograd.Function):
    """One partial derivative of Q; its own derivatives are the other partials of Q."""

    @staticmethod
    def forward(ctx, spec: ConvSpec, edges: Edges, slot: int, *args: Tensor | None) -> Tensor:
        ctx.spec, ctx.edges, ctx.slot = spec, edges, slot
        ctx.save_for_backward(*(a if a is not None else torch.empty(0) for a in args))
        return _run(spec, edges, slot, list(args))

    @staticmethod
    def backward(ctx, grad: Tensor):
        saved = list(ctx.saved_tensors)
        saved[ctx.slot] = grad
        grads = []
        for s in range(4):
            if s == ctx.slot or not ctx.needs_input_grad[3 + s]:
                grads.append(None)
                continue
            args = list(saved)
            args[s] = None
            grads.append(_Quad.apply(ctx.spec, ctx.edges, s, *args))
        return (None, None, None, *grads)


def convolve(spec: ConvSpec, edges: Edges, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """out[v] = Σ_{e: dst_e = v} TP(x[src_e], y_e, w_e), the convolution ∂Q/∂g.

    Shapes: x: [num_nodes, dim1], y: [n_edges, dim2], w: [n_edges, weight_numel]
        → [num_nodes, dim_out]
    """
    if spec.perm_in is not None:
        x = x.index_select(1, spec.perm_in)
    out = _Quad.apply(spec, edges, 3, x, y, w, None)
    return out if spec.perm_out is None else out.index_select(1, spec.perm_out)
