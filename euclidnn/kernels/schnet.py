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

__all__ = ["SchNetWeights", "schnet_energy_and_forces"]

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
_SIGNATURE = [_p, _p, _f64, _f64, _f64, _p, _p, _p]
LIBRARY = Library(
    Path(__file__).with_name("_schnet.c"),
    "PyTorch SchNet",
    {f"schnet_energy_forces_{s}": (ctypes.c_int, _SIGNATURE) for s in _SUFFIX.values()},
    # -fno-math-errno lets the elementwise loops call libmvec's vector exp and log1p
    extra_flags=["-fno-math-errno"],
    libs=["-lmvec", "-lm"],
    on_load=_find_blas,
)


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
    n, dtype = positions.shape[0], positions.dtype
    # bound here: every tensor lives until the call returns
    tensors = _kernel_tensors(
        weights, checked, positions, row_offset, edges, batch, num_graphs, species, mu
    )
    pointers = (ctypes.c_void_p * len(tensors))(
        *(t if t is None else t.data_ptr() for t in tensors)
    )
    energy, forces = positions.new_empty(num_graphs), positions.new_empty(n, 3)
    status = getattr(lib, f"schnet_energy_forces_{_SUFFIX[dtype]}")(
        _dimensions(weights, n, edges, num_graphs),
        pointers,
        gamma,
        r_max,
        math.log(torch.finfo(dtype).tiny),
        LIBRARY.extra[dtype],
        energy.data_ptr(),
        forces.data_ptr(),
    )
    _raise_for_status(status, n, num_graphs, weights.embedding.shape[0])
    return energy, forces


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
