"""The fused convolution kernel (``_conv.c``): equivariant "uvu" convolutions and SchNet's
continuous filter, with derivatives of any order through autograd.

The PyTorch path materializes each edge's message ([n_edges, irreps_out.dim]) several times
over (products, concatenation, gather of the gradient); the kernel reads an edge's weights and
spherical harmonics once and accumulates straight into the atom's row.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from euclidnn.kernels.build import Library
from euclidnn.kernels.checks import fused_library, op_library
from euclidnn.kernels.edges import Edges

__all__ = [
    "ConvSpec",
    "conv_partial",
    "convolve",
    "filter_conv",
    "fused_conv_available",
    "row_products",
]

_p, _i64, _i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURE = [_i32, _i64, _i64, *[_p] * 9, _i64, _i64, _i64, _i64, _p, _p, _i64, _i32]
LIBRARY = Library(
    Path(__file__).with_name("_conv.c"),
    "PyTorch convolution",
    {"uvu_conv_f32": (None, _SIGNATURE), "uvu_conv_f64": (None, _SIGNATURE)},
)

X, Y, W, G = range(4)  # the slots of the quadrilinear form Q(x, y, w, g) (see _conv.c)
_MODE = (1, 3, 2, 0)  # the kernel mode computing each slot


class ConvSpec:
    """The entries of the quadrilinear form of one set of "uvu" paths (see ``_conv.c``), and
    the column permutations into (``perm_in``) and out of (``perm_out``) the kernel's layout.

    Checked here, once: every entry reads and writes inside its rows. Holds tensors only (no
    pointers), so it is deep-copied and pickled with the module that owns it.

    Args:
        entries: rows (xo, j, go, wo, U): offsets into x, y, g and w, and the channel count.
        coefficients: one coefficient per entry.
        dims: the widths (x, y, w, g).
        perm_in, perm_out: column permutations of x and of the output (``None``: identity).

    Shapes: entries: [n, 5] int, coefficients: [n], perm_in: [dims[0]], perm_out: [dims[3]]
    """

    def __init__(
        self,
        entries: Tensor,
        coefficients: Tensor,
        dims: tuple[int, int, int, int],
        perm_in: Tensor | None = None,
        perm_out: Tensor | None = None,
    ) -> None:
        entries = entries.to(torch.int64).reshape(-1, 5).contiguous().clone()
        xo, j, go, wo, u = entries.unbind(1)
        xn, yn, wn, gn = (int(d) for d in dims)
        inside = (entries >= 0).all(1) & (xo + u <= xn) & (j < yn) & (go + u <= gn) & (wo + u <= wn)
        if not bool(inside.all()) or coefficients.shape != (entries.shape[0],):
            raise ValueError(f"ConvSpec: entries out of the widths {dims} or coefficients unfit")
        for perm, n in ((perm_in, xn), (perm_out, gn)):
            if perm is not None and not torch.equal(perm.sort().values, torch.arange(n)):
                raise ValueError(f"ConvSpec: a column permutation of {n} is not one")
        identity = lambda p: p is None or torch.equal(p, torch.arange(p.shape[0]))  # noqa: E731
        self.perm_in = None if identity(perm_in) else perm_in.to(torch.int64).clone()
        self.perm_out = None if identity(perm_out) else perm_out.to(torch.int64).clone()
        self.entries = entries
        self.coefficients = {
            d: coefficients.to(d).contiguous() for d in (torch.float32, torch.float64)
        }
        self.dims = (xn, yn, wn, gn)
        self.has_y = True  # False: y ≡ 1 (the continuous filter)

    @classmethod
    def product(cls, width: int) -> ConvSpec:
        """x ⊙ w of ``width`` channels with y ≡ 1 (SchNet's continuous filter): one entry,
        valid by construction (made at every call, so without the checks of ``__init__``)."""
        spec = cls.__new__(cls)
        spec.entries = torch.tensor([[0, 0, 0, 0, width]])
        one = torch.ones(1, dtype=torch.float64)
        spec.coefficients = {torch.float64: one, torch.float32: one.float()}
        spec.dims, spec.perm_in, spec.perm_out = (width, 1, width, width), None, None
        spec.has_y = False
        return spec


def _call(lib, spec: ConvSpec, edges: Edges, slot: int, args: list[Tensor | None]) -> Tensor:
    """∂Q/∂(args[slot]) from the other three arguments (``args[slot]`` is ``None``).

    Runs several times per layer and derivative, so the checks are kept to plain comparisons.
    """
    rows = (edges.num_src, edges.num_edges, edges.num_rows, edges.num_nodes)
    dtype = (args[X] if args[X] is not None else args[W]).dtype  # x or w is always given
    pointers = []  # the contiguous copies are bound in `tensors` until the call returns
    tensors = []
    for s, a in enumerate(args):
        if a is not None:
            if a.dtype != dtype or a.shape != (rows[s], spec.dims[s]):
                raise ValueError(f"uvu_conv: slot {'xywg'[s]} is {a.dtype} {list(a.shape)}")
            a = a.contiguous()
        tensors.append(a)
    out = tensors[slot] = torch.zeros(rows[slot], spec.dims[slot], dtype=dtype)
    if edges.num_edges == 0 or out.numel() == 0:
        return out
    mode = _MODE[slot]
    ready = edges.prepared()
    order, ptr = (ready.by_dst, ready.by_src, ready.by_row, (None, None))[mode] or (None, None)
    for t in (ready.src, ready.dst, order, ptr, ready.row, *tensors):
        pointers.append(None if t is None else t.data_ptr())
    if not spec.has_y:
        pointers[6] = None  # y ≡ 1
    function = lib.uvu_conv_f64 if dtype == torch.float64 else lib.uvu_conv_f32
    function(
        mode,
        rows[slot],
        edges.num_edges,
        *pointers,
        *spec.dims,
        spec.entries.data_ptr(),
        spec.coefficients[dtype].data_ptr(),
        spec.entries.shape[0],
        torch.get_num_threads(),
    )
    return out


class _Quad(torch.autograd.Function):
    """One partial derivative of Q; its own derivatives are the other partials of Q."""

    @staticmethod
    def forward(ctx, lib, spec: ConvSpec, edges: Edges, slot: int, *args: Tensor | None):
        ctx.lib, ctx.spec, ctx.edges, ctx.slot = lib, spec, edges, slot
        ctx.tensor_slots = [s for s, a in enumerate(args) if a is not None]
        ctx.save_for_backward(*args)
        return _call(lib, spec, edges, slot, list(args))

    @staticmethod
    def backward(ctx, grad: Tensor):
        saved = list(ctx.saved_tensors)
        saved[ctx.slot] = grad
        grads = []
        for s in range(4):
            if s == ctx.slot or not _needed(ctx, 4 + s):
                grads.append(None)
                continue
            args = list(saved)
            args[s] = None
            grads.append(_Quad.apply(ctx.lib, ctx.spec, ctx.edges, s, *args))
        return (None, None, None, None, *grads)


def _needed(ctx, i: int) -> bool:
    """Whether this backward pass needs the gradient of input ``i`` (4 + slot): it requires one, and the
    engine will run the node it flows into. ``torch.autograd.grad(energy, positions)`` with
    trainable weights skips, e.g., the first layer's feature gradient, which leads only to
    weights (PyTorch's own backward formulas skip such outputs the same way)."""
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.next_functions[ctx.tensor_slots.index(i - 4)][0]  # (one per tensor input)
    try:
        return node is None or torch._C._will_engine_execute_node(node)
    except (AttributeError, RuntimeError):  # a PyTorch without this query: compute it
        return True


def _partial(lib, spec: ConvSpec, edges: Edges, slot: int, *args: Tensor | None) -> Tensor:
    """∂Q/∂(slot), with an autograd node only where a gradient may be asked for."""
    if torch.is_grad_enabled():
        for a in args:
            if a is not None and a.requires_grad:
                return _Quad.apply(lib, spec, edges, slot, *args)
    return _call(lib, spec, edges, slot, list(args))


def _rows(t: Tensor, rows: int, width: int) -> Tensor | None:
    """``t`` broadcast to [rows, width], or ``None`` where it does not broadcast so."""
    if t.shape == (rows, width):
        return t
    if t.dim() > 2 or t.shape[-1] != width:
        return None
    try:
        return t.expand(rows, width)
    except RuntimeError:
        return None


def _edges(edges, edge_src, edge_dst, row, num_src, num_nodes, num_rows) -> Edges:
    """``edges``, checked against these tensors and sizes, or new ones; prepared (and so all
    indices checked) before anything runs."""
    if edges is None:
        edges = Edges(edge_src, edge_dst, num_nodes, num_src, row, num_rows)
    else:
        edges.check_matches(edge_src, edge_dst, row, num_src, num_nodes, num_rows)
    edges.prepared()
    return edges


def convolve(
    spec: ConvSpec,
    x: Tensor,
    y: Tensor,
    w: Tensor,
    edge_src: Tensor,
    edge_dst: Tensor,
    num_nodes: int,
    *,
    edges: Edges | None = None,
    reference: Callable[[], Tensor],
) -> Tensor:
    """out[v] = Σ_{e: edge_dst[e] = v} TP(x[edge_src[e]], y[e], w[e]), i.e. ∂Q/∂g, fused where
    it can run (:func:`~euclidnn.kernels.checks.fused_library`), else ``reference()``.

    Args:
        spec: the tensor product's entries.
        edges: these edges prepared once (:class:`Edges`); prepared here when ``None``.
        reference: the PyTorch composition computing the same (called when not fused).

    Shapes: x: [num_src, dims[0]], y: [n_edges, dims[1]], w: [n_edges, dims[2]] (y and w
        broadcast), edge_src, edge_dst: [n_edges] → [num_nodes, dims[3]]
    """
    lib = fused_library(LIBRARY, x, y, w)
    if lib is None and op_library(LIBRARY, x, y, w) is not None:
        widths = [(t.dim(), int(t.shape[-1])) for t in (x, y, w)]  # a trace's constants
        if widths == [(2, d) for d in spec.dims[:3]]:
            return _record_op(spec, x, y, w, edge_src, edge_dst, None, num_nodes)
    n_edges = edge_src.shape[0] if edge_src.dim() == 1 else -1
    y, w = _rows(y, n_edges, spec.dims[Y]), _rows(w, n_edges, spec.dims[W])
    if lib is None or x.dim() != 2 or x.shape[1] != spec.dims[X] or y is None or w is None:
        return reference()
    edges = _edges(edges, edge_src, edge_dst, None, x.shape[0], num_nodes, None)
    if spec.perm_in is not None:
        x = x.index_select(1, spec.perm_in)
    out = _partial(lib, spec, edges, G, x, y, w, None)
    return out if spec.perm_out is None else out.index_select(1, spec.perm_out)


def fused_conv_available(*tensors: Tensor | None) -> bool:
    """Whether :func:`conv_partial` can run on these floating-point tensors
    (:func:`~euclidnn.kernels.checks.fused_library`: CPU, one dtype, float32/float64, not
    traced, ``EUCLIDNN_NATIVE`` not ``"0"``, the library built); else the caller runs its
    reference."""
    return fused_library(LIBRARY, *tensors) is not None


def conv_partial(
    spec: ConvSpec, edges: Edges, slot: int, x: Tensor | None, y: Tensor | None,
    w: Tensor | None, g: Tensor | None,
) -> Tensor:  # fmt: skip
    """∂Q/∂(slot) of the quadrilinear form of ``_conv.c`` from the other three arguments
    (``slot`` 0 … 3: x, y, w, g; that argument ``None``), with no autograd node: for a
    hand-written derivative. Slot 3 is the convolution (:func:`convolve`), the others its
    gradients. Features are in the kernel's layout (``spec.perm_in`` and ``spec.perm_out`` are
    not applied). Only where :func:`fused_conv_available` says so, or while ``torch.jit.trace``
    records inside :func:`~euclidnn.kernels.checks.recording_ops`: then it is recorded as the
    custom op ``euclidnn::uvu_conv`` at ``slot`` (a hand-written derivative in an exported file).

    Shapes: x: [edges.num_src, dims[0]], y: [n_edges, dims[1]], w: [edges.num_rows, dims[2]],
        g: [edges.num_nodes, dims[3]] → the shape of the slot's argument
    """
    if op_library(LIBRARY, x, y, w, g) is not None:
        return _record_partial(spec, edges, slot, x, y, w, g)
    lib = LIBRARY.get()
    if lib is None:
        raise RuntimeError("conv_partial: the convolution kernel is unavailable")
    edges.prepared()  # every index checked
    return _call(lib, spec, edges, slot, [x, y, w, g])


def row_products(spec: ConvSpec, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """∂Q/∂g with each row its own node and one weight row shared by every row, with an autograd
    node where a gradient may be asked for (any order, through the same kernel):

        out[z, go_n + u] = Σ_n c_n y[z, j_n] w[wo_n + u] x[z, xo_n + u]    (u < U_n)

    The Clebsch–Gordan step of a tensor product whose weights are shared (see
    :class:`euclidnn.o3.TensorProduct`): with ``w`` a row of ones it is every path's
    x1 ⊗ x2 contracted with its coefficients, placed where the caller wants each channel.
    Only where :func:`fused_conv_available` says so; features in the kernel's layout (the
    spec's permutations are not applied).

    Shapes: x: [z, dims[0]], y: [z, dims[1]], w: [dims[2]] → [z, dims[3]]
    """
    lib = LIBRARY.get()
    if lib is None:
        raise RuntimeError("row_products: the convolution kernel is unavailable")
    if spec.perm_in is not None or spec.perm_out is not None:
        raise ValueError("row_products: a spec with column permutations (the kernel's layout only)")
    edges = Edges.one_per_row(x.shape[0])
    edges.prepared()
    return _partial(lib, spec, edges, G, x, y, w.reshape(1, -1), None)


def _record_partial(spec: ConvSpec, edges: Edges, slot: int, x, y, w, g) -> Tensor:
    """∂Q/∂(slot) as the custom op ``euclidnn::uvu_conv``, for a trace to record: the edge
    tensors the edges were made from, the size of the slot's rows as the trace gave it
    (:attr:`Edges.given_sizes`), the entries as constants. The edges are not prepared here: the
    op checks and orders them at every call."""
    from euclidnn.kernels import ops  # here: ops imports this module

    ops.register()
    if spec.perm_in is not None or spec.perm_out is not None:
        raise ValueError("conv_partial: a spec with column permutations (the kernel's layout only)")
    edge_src, edge_dst, row, _ = edges._tensors
    size = edges.given_sizes[slot]
    num_out = size if isinstance(size, Tensor) else torch.tensor(size)
    return torch.ops.euclidnn.uvu_conv(
        slot, x, y, w, g, edge_src, edge_dst, row, num_out, spec.entries,
        spec.coefficients[torch.float64], list(spec.dims),
    )  # fmt: skip


def _record_op(spec: ConvSpec, x, y, w, edge_src, edge_dst, row, num_nodes) -> Tensor:
    """∂Q/∂g as the custom op ``euclidnn::uvu_conv`` (:mod:`euclidnn.kernels.ops`), for a trace
    to record: its entries become constants of the trace, and ``num_nodes`` (a traced size,
    a 0-dim tensor, while tracing) stays a function of the inputs."""
    from euclidnn.kernels import ops  # here: ops imports this module

    ops.register()
    if spec.perm_in is not None:
        x = x.index_select(1, spec.perm_in)
    num_out = num_nodes if isinstance(num_nodes, Tensor) else torch.tensor(num_nodes)
    out = torch.ops.euclidnn.uvu_conv(
        G, x, y, w, None, edge_src, edge_dst, row, num_out, spec.entries,
        spec.coefficients[torch.float64], list(spec.dims),
    )  # fmt: skip
    return out if spec.perm_out is None else out.index_select(1, spec.perm_out)


def _filter_library(x, w, grad_out, edge_src, row):
    """The library where the filter kernel runs on these: 2-d features of one width (and
    without ``row``, one filter row per edge), else None (the reference runs, and raises
    PyTorch's errors for inputs that do not fit)."""
    lib = fused_library(LIBRARY, x, w, grad_out)
    tensors = [t for t in (x, w, grad_out) if t is not None]
    if lib is None or any(t.dim() != 2 or t.shape[1] != x.shape[1] for t in tensors):
        return None
    n_edges = edge_src.shape[0] if edge_src.dim() == 1 else -1
    return None if row is None and w.shape[0] != n_edges else lib


def filter_conv(
    x: Tensor,
    w: Tensor,
    edge_src: Tensor,
    edge_dst: Tensor,
    num_nodes: int,
    row: Tensor | None = None,
    *,
    edges: Edges | None = None,
    reference: Callable[[], Tensor],
) -> Tensor:
    """out[i] = Σ_{e: edge_dst[e] = i} x[edge_src[e]] ⊙ w[row[e]] (SchNet's continuous filter),
    fused where it can run, else ``reference()``.

    Shapes: x: [num_src, F], w: [n_rows, F] (n_rows = n_edges without ``row``),
        edge_src, edge_dst, row: [n_edges] → [num_nodes, F]
    """
    lib = _filter_library(x, w, None, edge_src, row)
    if lib is None and op_library(LIBRARY, x, w) is not None:
        width = int(x.shape[-1]) if x.dim() == 2 else -1  # a trace's constant
        if w.dim() == 2 and int(w.shape[-1]) == width:
            return _record_op(ConvSpec.product(width), x, None, w, edge_src, edge_dst, row, num_nodes)  # fmt: skip
    if lib is None:
        return reference()
    num_rows = None if row is None else w.shape[0]
    edges = _edges(edges, edge_src, edge_dst, row, x.shape[0], num_nodes, num_rows)
    return _partial(lib, ConvSpec.product(x.shape[1]), edges, G, x, None, w, None)
