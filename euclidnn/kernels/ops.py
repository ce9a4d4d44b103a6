"""The fused convolution kernel as a TorchScript custom op, ``euclidnn::uvu_conv``, so that a
traced model (``euclidnn export``) calls ``_conv.c`` instead of recording the PyTorch reference.

One op for every partial derivative of the quadrilinear form Q(x, y, w, g) of ``_conv.c``::

    euclidnn::uvu_conv(int slot, Tensor? x, Tensor? y, Tensor? w, Tensor? g, Tensor edge_src,
                       Tensor edge_dst, Tensor? row, Tensor num_out, Tensor entries,
                       Tensor coefficients, int[] dims) -> Tensor

returns ∂Q/∂(slot) (slot 0 … 3: x, y, w, g) from the other three arguments; the argument in
``slot`` is ``None``. Slot 3 (g) is the convolution out[v] = Σ_{e: edge_dst[e] = v} TP(x[src],
y[e], w[row[e]]); its derivatives are the op at the other slots, so autograd gets any order of
derivative. ``y`` = ``None`` outside its slot means y ≡ 1 (SchNet's continuous filter, dims[1]
= 1); ``row`` = ``None`` means edge e reads row e of ``w``. ``num_out`` is the number of rows of
the result (atoms for slots x and g, rows of ``w``, edges for y) as a one-element integer
tensor, so that a trace keeps it a function of the inputs' shapes (an ``int`` argument would be
frozen into the trace). ``entries`` (int64 [n, 5]: xo, j, go, wo, U), ``coefficients`` [n] and
``dims`` (x, y, w, g widths) are :class:`~euclidnn.kernels.ConvSpec`'s. Features are in the
kernel's layout (the caller permutes).

The op runs the same checks as the rest of :mod:`euclidnn.kernels` before the kernel sees a
pointer: every tensor's dtype, device and shape, every entry inside the widths, indices int64
(int32 converted, others a ``TypeError``) and in range (``IndexError``); no input crashes the
process. ``euclidnn/export/euclidnn_ops.cpp`` registers the same schema in C++ (the LAMMPS
plugin); :func:`register` registers it in Python (``import euclidnn.export`` does, and so does a
trace that records it). The C++ and Python implementations call the same C function.

>>> register()
>>> x = torch.tensor([[1.0], [2.0]])
>>> w = torch.tensor([[10.0], [100.0]])
>>> torch.ops.euclidnn.uvu_conv(
...     3, x, None, w, None, torch.tensor([0, 1]), torch.tensor([1, 0]), None,
...     torch.tensor(2), torch.tensor([[0, 0, 0, 0, 1]]), torch.tensor([1.0]), [1, 1, 1, 1],
... ).flatten()
tensor([200.,  10.])
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

from euclidnn.kernels.checks import FLOAT_DTYPES, INDEX_DTYPES
from euclidnn.kernels.conv import LIBRARY, ConvSpec, W, X, Y, _call
from euclidnn.kernels.edges import Edges
from euclidnn.kernels.schnet import SCHNET_OP, SCHNET_SCHEMA, schnet_op

__all__ = ["CONV_OP", "SCHEMA", "SCHNET_OP", "available", "register"]

CONV_OP = "euclidnn::uvu_conv"
SCHEMA = (
    "(int slot, Tensor? x, Tensor? y, Tensor? w, Tensor? g, Tensor edge_src, Tensor edge_dst, "
    "Tensor? row, Tensor num_out, Tensor entries, Tensor coefficients, int[] dims) -> Tensor"
)
_lock = threading.Lock()


def available(name: str) -> bool:
    """Whether the operator ``name`` ("namespace::op") is registered in this process."""
    namespace, _, op = name.partition("::")
    try:
        getattr(getattr(torch.ops, namespace), op)
    except (AttributeError, RuntimeError):
        return False
    return True


def register() -> None:
    """Register ``euclidnn::uvu_conv`` (CPU kernel and autograd) and
    ``euclidnn::schnet_energy_forces`` (:func:`euclidnn.kernels.schnet.schnet_op`: SchNet's
    energies, forces and cell derivative in one call, not differentiable) unless registered
    already (by an earlier call, or by the C++ plugin loaded into this process)."""
    with _lock:
        if not available(CONV_OP):
            torch.library.define(CONV_OP, SCHEMA)
            torch.library.impl(CONV_OP, "CPU", func=_uvu_conv)
            torch.library.register_autograd(CONV_OP, _backward, setup_context=_setup_context)
        if not available(SCHNET_OP):
            torch.library.define(SCHNET_OP, SCHNET_SCHEMA)
            torch.library.impl(SCHNET_OP, "CPU", func=schnet_op)


def _uvu_conv(
    slot: int,
    x: Tensor | None,
    y: Tensor | None,
    w: Tensor | None,
    g: Tensor | None,
    edge_src: Tensor,
    edge_dst: Tensor,
    row: Tensor | None,
    num_out: Tensor,
    entries: Tensor,
    coefficients: Tensor,
    dims: list[int],
) -> Tensor:
    """The CPU kernel of the op: checks, then :func:`euclidnn.kernels.conv._call`."""
    args = [x, y, w, g]
    if slot not in range(4) or args[slot] is not None:
        raise ValueError(f"{CONV_OP}: slot must be 0 … 3 with that argument None, got {slot}")
    missing = [("x", "y", "w", "g")[s] for s in (X, W, 3) if s != slot and args[s] is None]
    if missing:
        raise ValueError(f"{CONV_OP}: {missing[0]} is needed for slot {slot}")
    if num_out.dtype not in INDEX_DTYPES or num_out.numel() != 1 or int(num_out) < 0:
        raise ValueError(f"{CONV_OP}: num_out must be one non-negative integer")
    if entries.dtype not in INDEX_DTYPES or entries.dim() != 2 or entries.shape[1] != 5:
        raise ValueError(f"{CONV_OP}: entries must be integers of shape [n, 5]")
    if len(dims) != 4 or min(dims) < 0:
        raise ValueError(f"{CONV_OP}: dims must be four widths, got {dims}")
    if not coefficients.is_floating_point() or coefficients.dim() != 1:
        raise ValueError(f"{CONV_OP}: coefficients must be a 1-d floating-point tensor")
    if not (entries.is_cpu and coefficients.is_cpu and num_out.is_cpu):
        raise ValueError(f"{CONV_OP}: entries, coefficients and num_out must be CPU tensors")
    for name, t in zip("xywg", args):
        if t is not None and (t.dtype not in FLOAT_DTYPES or not t.is_cpu or t.dim() != 2):
            raise ValueError(f"{CONV_OP}: {name} must be a 2-d float32/float64 CPU tensor")
    dtypes = {t.dtype for t in args if t is not None}
    if len(dtypes) > 1:
        raise ValueError(f"{CONV_OP}: x, y, w and g must have one dtype, got {sorted(map(str, dtypes))}")  # fmt: skip
    spec = ConvSpec(entries, coefficients, tuple(dims))  # ValueError: an entry outside the widths
    spec.has_y = not (y is None and slot != Y)
    if not spec.has_y and dims[Y] != 1:
        raise ValueError(f"{CONV_OP}: y = None (y ≡ 1) needs dims[1] = 1, got {dims[1]}")
    n = int(num_out)
    n_edges = edge_src.shape[0] if edge_src.dim() == 1 else -1
    num_src = n if slot == X else x.shape[0]
    num_nodes = n if slot == 3 else g.shape[0]
    num_rows = None if row is None else (n if slot == W else w.shape[0])
    if (slot == Y or (slot == W and row is None)) and n != n_edges:
        raise ValueError(f"{CONV_OP}: num_out {n} for slot {slot}, but {n_edges} edges")
    edges = Edges(edge_src, edge_dst, num_nodes, num_src, row, num_rows)
    edges.prepared()  # every index checked (TypeError, IndexError, ValueError)
    lib = LIBRARY.get()
    if lib is None:
        raise RuntimeError(
            f"{CONV_OP}: the C kernel {LIBRARY.source.name} is unavailable in this process "
            "(see the warning above); export the model with --portable to run it without"
        )
    return _call(lib, spec, edges, slot, args)


def _setup_context(ctx, inputs, output) -> None:
    slot, x, y, w, g, edge_src, edge_dst, row, _, entries, coefficients, dims = inputs
    ctx.slot, ctx.dims = slot, list(dims)
    ctx.rows = [None if t is None else t.shape[0] for t in (x, y, w, g)]
    ctx.rows[slot] = output.shape[0]
    ctx.save_for_backward(x, y, w, g, edge_src, edge_dst, row, entries, coefficients)


def _backward(ctx, grad: Tensor):
    """The gradient of ∂Q/∂(slot) with respect to each other argument s: ∂Q/∂s with the
    incoming gradient in ``slot`` (Q is linear in each argument)."""
    x, y, w, g, edge_src, edge_dst, row, entries, coefficients = ctx.saved_tensors
    args = [x, y, w, g]
    args[ctx.slot] = grad
    grads = [None] * 4
    for s in range(4):
        if s == ctx.slot or not ctx.needs_input_grad[1 + s]:
            continue
        others = list(args)
        others[s] = None
        grads[s] = torch.ops.euclidnn.uvu_conv(
            s, *others, edge_src, edge_dst, row, torch.tensor(ctx.rows[s]), entries,
            coefficients, ctx.dims,
        )  # fmt: skip
    return (None, *grads, None, None, None, None, None, None, None)
