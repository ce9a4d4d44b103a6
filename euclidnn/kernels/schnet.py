"""SchNet's C kernel (``_schnet.c``): energy and forces of a SchNet model in one call.

For a 9-atom molecule the PyTorch version of the call is ~150 tensor operations of a few
microseconds of overhead each, about twice the arithmetic; the kernel is one C function. Its
matrix products call the BLAS that PyTorch links (its ``sgemm_`` / ``dgemm_`` symbols); where
PyTorch's library has no such symbols the kernel is unavailable (one warning) and SchNet runs
its PyTorch code.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from euclidnn.kernels.build import Library
from euclidnn.kernels.checks import float_tensor, fused_library, index_tensor
from euclidnn.kernels.edges import Edges

__all__ = ["SchNetWeights", "schnet_energy_and_forces", "schnet_kernel_available"]

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _find_blas(handle: ctypes.CDLL) -> dict[torch.dtype, int]:
    """Addresses of the ``sgemm_`` / ``dgemm_`` in PyTorch's own library (raises where absent)."""
    torch_cpu = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
    names = {torch.float32: "sgemm_", torch.float64: "dgemm_"}
    try:
        return {
            d: ctypes.cast(getattr(torch_cpu, n), ctypes.c_void_p).value for d, n in names.items()
        }
    except AttributeError:
        raise OSError("PyTorch's library exports no BLAS sgemm_/dgemm_") from None


_p, _i64, _f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
_SIGNATURE = [_p, _p, _f64, _f64, _f64, _p, _p, _p, _p, _p, _p]
LIBRARY = Library(
    Path(__file__).with_name("_schnet.c"),
    "PyTorch SchNet",
    {f"schnet_energy_forces_{s}": (ctypes.c_int, _SIGNATURE) for s in _SUFFIX.values()},
    # -fno-math-errno lets the elementwise loops call libmvec's vector exp and log1p
    extra_flags=["-fno-math-errno"],
    libs=["-lmvec", "-lm"],
    on_load=_find_blas,
)


def schnet_kernel_available() -> bool:
    """Whether SchNet's C kernel builds and loads here (one warning where it does not)."""
    return LIBRARY.get() is not None


class SchNetWeights(NamedTuple):
    """The weights of a SchNet model in the kernel's order (``nn.Linear`` layouts: W [out, in]).

    Shapes: embedding [S, F], readout1_w [H, F], readout1_b [H], readout2_w [1, H],
        readout2_b [1], scales, shifts [S]; each interaction: filter1 W [W, K], b [W],
        filter2 W [W, W], b [W], in2filter W [W, F], out1 W [F, W], b [F], out2 W [F, F], b [F]
    """

    embedding: Tensor
    readout1_w: Tensor
    readout1_b: Tensor
    readout2_w: Tensor
    readout2_b: Tensor
    scales: Tensor
    shifts: Tensor
    interactions: Sequence[tuple[Tensor, ...]]

    def checked(self, dtype: torch.dtype) -> list[Tensor] | None:
        """All tensors, contiguous, in the kernel's order, each checked against its shape
        (``ValueError``); ``None`` where one is not a CPU tensor of ``dtype`` (the kernel
        does not apply)."""
        (S, F), H = self.embedding.shape, self.readout1_w.shape[0]
        W, K = self.interactions[0][0].shape if self.interactions else (0, 0)
        tops = zip(
            (
                "embedding",
                "readout1_w",
                "readout1_b",
                "readout2_w",
                "readout2_b",
                "scales",
                "shifts",
            ),
            self[:7],
            ((S, F), (H, F), (H,), (1, H), (1,), (S,), (S,)),
        )
        named = list(tops)
        shapes = ((W, K), (W,), (W, W), (W,), (W, F), (F, W), (F,), (F, F), (F,))
        for t, weights in enumerate(self.interactions):
            if len(weights) != len(shapes):
                raise ValueError(f"interaction {t}: expected {len(shapes)} weights")
            named += [(f"interaction {t}", w, s) for w, s in zip(weights, shapes)]
        out = []
        for name, t, shape in named:  # one pass: this runs at every MD step
            if t.dtype != dtype or not t.is_cpu:
                return None
            if t.shape != shape:
                raise ValueError(f"{name}: expected shape {list(shape)}, got {list(t.shape)}")
            out.append(t if t.is_contiguous() else t.contiguous())
        return out


def schnet_energy_and_forces(
    weights: SchNetWeights,
    positions: Tensor,
    row_offset: Tensor | None,
    edges: Edges,
    batch: Tensor,
    num_graphs: int,
    species: Tensor,
    mu: Tensor,
    gamma: float,
    r_max: float,
    *,
    reference: Callable[[], tuple[Tensor, Tensor]],
) -> tuple[Tensor, Tensor]:
    """Energy per structure and forces of a SchNet model (the maths is
    :meth:`euclidnn.models.SchNet.energy_and_forces`) in one C call where it can run, else
    ``reference()``.

    Args:
        edges: the graph's edges with ``row`` = the undirected pair of each edge and
            ``row_edge`` (a filter row per pair).
        row_offset: S·cell of each pair's representative edge, or None (no periodic shifts).

    Shapes: positions [n, 3] Å, row_offset [n_rows, 3], batch, species [n], mu [K]
        → (energy [num_graphs] eV, forces [n, 3] eV/Å)
    """
    lib = fused_library(LIBRARY, positions, row_offset, mu)
    checked = None if lib is None else weights.checked(positions.dtype)
    if checked is None or not edges.has_rows or not weights.interactions:
        return reference()
    energy, forces = positions.new_empty(num_graphs), positions.new_empty(positions.shape[0], 3)
    _run(lib, weights, checked, positions, row_offset, edges, batch, num_graphs, species, mu,
         gamma, r_max, [energy, forces, None, None, None])  # fmt: skip
    return energy, forces


def _run(lib, weights, checked, positions, row_offset, edges, batch, num_graphs, species, mu,
         gamma: float, r_max: float, out: list[Tensor | None]) -> None:  # fmt: skip
    """One call of ``_schnet.c`` on checked arguments. ``out``: energy [num_graphs] and forces
    [n, 3] (written), the per-atom weight [n] seeding the backward pass (None: ones), per-atom
    energies [n] and the gradient of each pair row's offset [P, 3] (written; None: not asked)."""
    n, dtype = positions.shape[0], positions.dtype
    # bound here: every tensor lives until the call returns
    tensors = _kernel_tensors(
        weights, checked, positions, row_offset, edges, batch, num_graphs, species, mu
    )
    pointers = (ctypes.c_void_p * len(tensors))(
        *(t if t is None else t.data_ptr() for t in tensors)
    )
    status = getattr(lib, f"schnet_energy_forces_{_SUFFIX[dtype]}")(
        _dimensions(weights, n, edges, num_graphs), pointers, float(gamma), float(r_max),
        math.log(torch.finfo(dtype).tiny), LIBRARY.extra[dtype],
        *(None if t is None else t.data_ptr() for t in out),
    )  # fmt: skip
    _raise_for_status(status, n, num_graphs, weights.embedding.shape[0])


def _kernel_tensors(
    weights: SchNetWeights,
    checked: list[Tensor],
    positions: Tensor,
    row_offset: Tensor | None,
    edges: Edges,
    batch: Tensor,
    num_graphs: int,
    species: Tensor,
    mu: Tensor,
) -> list[Tensor | None]:
    """The kernel's tensor arguments in its order, each checked (dtype, device, shape,
    contiguity; index ranges of batch and species are checked in C); ``checked``: the
    weights from :meth:`SchNetWeights.checked`."""
    n = positions.shape[0]
    if edges.num_nodes != n or edges.num_src != n:
        raise ValueError(f"edges: made for {edges.num_nodes} atoms, positions have {n}")
    ready = edges.prepared()
    if ready.row_src is None:
        raise ValueError("edges: made without row_edge (the representative edge of each row)")
    return [
        float_tensor(positions, "positions", (n, 3)),
        None if row_offset is None else float_tensor(row_offset, "row_offset", (edges.num_rows, 3)),
        ready.row_src,
        ready.row_dst,
        index_tensor(batch, "batch", num_graphs, n, check_range=False),  # checked in C
        index_tensor(species, "species", weights.embedding.shape[0], n, check_range=False),
        ready.src,
        ready.dst,
        ready.row,
        *ready.by_dst,
        *ready.by_src,
        *ready.by_row,
        float_tensor(mu, "mu", (weights.interactions[0][0].shape[1],)),
        *checked,
    ]


def _dimensions(weights: SchNetWeights, n: int, edges: Edges, num_graphs: int) -> ctypes.Array:
    """The kernel's integer arguments: sizes of the graph and of the model, and threads."""
    width, num_basis = weights.interactions[0][0].shape
    return (ctypes.c_int64 * 11)(
        n,
        edges.num_rows,
        edges.num_edges,
        num_graphs,
        len(weights.interactions),
        weights.embedding.shape[1],
        width,
        num_basis,
        weights.readout1_w.shape[0],
        torch.get_num_threads(),
        weights.embedding.shape[0],
    )


def _raise_for_status(status: int, n: int, num_graphs: int, num_species: int) -> None:
    """The kernel's return code as an exception (0: success)."""
    if status == 2:
        raise IndexError(f"batch: an index is out of range for {num_graphs} graphs")
    if status == 3:
        raise IndexError(f"species: an index is out of range for {num_species} rows")
    if status != 0:
        raise MemoryError(f"SchNet kernel: no memory for the workspace of {n} atoms")


SCHNET_OP = "euclidnn::schnet_energy_forces"
SCHNET_SCHEMA = (
    "(Tensor positions, Tensor species, Tensor edge_src, Tensor edge_dst, Tensor edge_pair, "
    "Tensor pair_edge, Tensor edge_shift, Tensor cell, Tensor weight, Tensor mu, "
    "Tensor[] params, float gamma, float r_max) -> (Tensor, Tensor, Tensor)"
)


def schnet_op(
    positions: Tensor,
    species: Tensor,
    edge_src: Tensor,
    edge_dst: Tensor,
    edge_pair: Tensor,
    pair_edge: Tensor,
    edge_shift: Tensor,
    cell: Tensor,
    weight: Tensor,
    mu: Tensor,
    params: list[Tensor],
    gamma: float,
    r_max: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """The CPU kernel of the custom op ``euclidnn::schnet_energy_forces`` (registered by
    :func:`euclidnn.kernels.ops.register`; ``euclidnn/export/schnet_op.cpp`` is its C++ twin):
    one structure, every argument checked, then one call of ``_schnet.c``.

    Returns ``(atom_energy, forces, cell_grad)``: E_i of every atom, F = −∂(Σ_i weight_i E_i)/∂R
    and ∂(Σ_i weight_i E_i)/∂cell, for the edge vectors ``positions[edge_src] −
    positions[edge_dst] + edge_shift @ cell``. ``edge_pair`` / ``pair_edge`` are the undirected
    pairs of :func:`euclidnn.data.pairs.edge_pairs` (each pair's representative edge must be the
    edge itself or its reverse: checked); ``params`` are :class:`SchNetWeights` flattened (the
    seven top tensors, then nine per interaction); ``species`` are rows of the embedding.

    Shapes: positions [N, 3], species [N], edge_src, edge_dst, edge_pair [E], pair_edge [P],
        edge_shift [E, 3], cell [3, 3], weight [N], mu [K] → ([N], [N, 3], [3, 3])
    """
    op, n = SCHNET_OP, positions.shape[0]
    weights, checked = _op_weights(positions, edge_src, edge_shift, cell, weight, mu, params)
    if pair_edge.dim() != 1:
        raise ValueError(f"{op}: pair_edge must have shape [P], got {list(pair_edge.shape)}")
    num_pairs = pair_edge.shape[0]
    edges = Edges(edge_src, edge_dst, n, n, edge_pair, num_pairs, row_edge=pair_edge)
    ready = edges.prepared()  # every index checked: TypeError, IndexError, ValueError
    row_shift = edge_shift.index_select(0, pair_edge.to(torch.int64))  # pair_edge: checked
    _check_pairs(ready, edge_shift, row_shift)
    lib = LIBRARY.get()
    if lib is None:
        raise RuntimeError(
            f"{op}: the C kernel {LIBRARY.source.name} is unavailable in this process (see the "
            "warning above); export the model with --portable to run it without"
        )
    row_offset = row_shift @ cell  # [P, 3]: S·cell of each pair's representative edge
    forces, atom_energy = positions.new_empty(n, 3), positions.new_empty(n)
    row_grad = positions.new_empty(num_pairs, 3)
    out = [positions.new_empty(1), forces, weight.contiguous(), atom_energy, row_grad]
    batch = positions.new_zeros(n, dtype=torch.int64)
    _run(lib, weights, checked, positions, row_offset, edges, batch, 1, species, mu, gamma, r_max,
         out)  # fmt: skip
    return atom_energy, forces, row_shift.transpose(0, 1) @ row_grad


def _op_weights(positions, edge_src, edge_shift, cell, weight, mu, params: list[Tensor]):
    """:func:`schnet_op`'s checks of the positions, the per-edge and per-atom tensors and the
    parameters (``TypeError`` / ``ValueError`` naming the argument); the parameters as
    :class:`SchNetWeights` and their checked list."""
    op = SCHNET_OP
    if positions.dtype not in _SUFFIX or not positions.is_cpu:
        raise TypeError(f"{op}: positions must be a float32 or float64 CPU tensor")
    dtype = positions.dtype
    if positions.dim() != 2 or positions.shape[1] != 3:
        raise ValueError(f"{op}: positions must have shape [N, 3], got {list(positions.shape)}")
    n = positions.shape[0]
    if edge_src.dim() != 1:
        raise ValueError(f"{op}: edge_src must have shape [E], got {list(edge_src.shape)}")
    n_edges = edge_src.shape[0]
    for name, t, shape in (
        ("edge_shift", edge_shift, (n_edges, 3)),
        ("cell", cell, (3, 3)),
        ("weight", weight, (n,)),
        ("mu", mu, (mu.shape[0] if mu.dim() == 1 else -1,)),
    ):
        if t.dtype != dtype or not t.is_cpu:
            raise TypeError(f"{op}: {name} must be a CPU tensor of {dtype}, got {t.dtype}")
        if tuple(t.shape) != shape:
            raise ValueError(f"{op}: {name} must have shape {list(shape)}, got {list(t.shape)}")
    if len(params) < 16 or (len(params) - 7) % 9:
        raise ValueError(f"{op}: params must be 7 + 9 · interactions tensors, got {len(params)}")
    num_interactions = (len(params) - 7) // 9
    weights = SchNetWeights(
        *params[:7], [tuple(params[7 + 9 * t : 16 + 9 * t]) for t in range(num_interactions)]
    )
    checked = weights.checked(dtype)  # ValueError for a wrong shape
    if checked is None:
        raise TypeError(f"{op}: params must be CPU tensors of the positions' dtype ({dtype})")
    return weights, checked


def _check_pairs(ready, edge_shift: Tensor, row_shift: Tensor) -> None:
    """``ValueError`` unless the representative edge of each edge's pair is the edge itself or
    its reverse (same endpoints, swapped, with the opposite shift)."""
    if ready.row is None or ready.row.numel() == 0:
        return
    rs, rd = ready.row_src[ready.row], ready.row_dst[ready.row]
    shift = row_shift[ready.row]
    same = (rs == ready.src) & (rd == ready.dst) & (shift == edge_shift).all(-1)
    reverse = (rs == ready.dst) & (rd == ready.src) & (shift == -edge_shift).all(-1)
    if not bool((same | reverse).all()):
        bad = int((~(same | reverse)).nonzero()[0])
        raise ValueError(
            f"{SCHNET_OP}: edge {bad}'s pair (edge_pair, pair_edge) is neither the edge nor its "
            "reverse"
        )
