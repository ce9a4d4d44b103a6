"""Edges checked once for the C kernels, with the visiting orders the kernels need."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from euclidnn.kernels.checks import index_tensor

__all__ = ["Edges", "Prepared"]


def _csr(index: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Edges grouped by ``index``: ``order`` lists the edges with index 0, then 1, … (stable),
    and the edges of group v are ``order[ptr[v]:ptr[v + 1]]``.

    Shapes: index: [n_edges] int64 in 0 … size − 1 → (order [n_edges], ptr [size + 1])
    """
    order = torch.argsort(index, stable=True)
    ptr = torch.zeros(size + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(torch.bincount(index, minlength=size), 0)
    return order, ptr


class Prepared(NamedTuple):
    """The checked index tensors of :class:`Edges` (private int64 copies, contiguous, CPU).

    by_dst, by_src, by_row: (order, ptr) groupings (:func:`_csr`); row, by_row: ``None``
    without rows; row_src, row_dst: ``None`` without ``row_edge``.
    """

    src: Tensor
    dst: Tensor
    row: Tensor | None
    by_dst: tuple[Tensor, Tensor]
    by_src: tuple[Tensor, Tensor]
    by_row: tuple[Tensor, Tensor] | None
    row_src: Tensor | None
    row_dst: Tensor | None


class Edges:
    """An edge list for the kernels: endpoints checked and copied, and the edges grouped by
    destination, by source and (when edges share rows of a per-row tensor) by row.

    Making one only records the tensors; the checks and groupings are computed on first use by
    a kernel (:meth:`prepared`) and kept in the object, so a model can make one per graph on
    any device (:meth:`euclidnn.data.Graph.derived` keeps it with the graph) and only the
    CPU kernels pay for it, once. Every index is checked there (``TypeError`` for a dtype
    other than int64/int32, ``IndexError`` out of range) and copied, so a kernel can take
    pointers to the copies on every later call. The object remembers which tensors (and which
    versions of them) it was made from: :meth:`check_matches` tells a caller that passes edges
    made from other tensors.

    Args:
        edge_src: source (neighbour j) of each edge, in 0 … num_src − 1.
        edge_dst: destination (centre i) of each edge, in 0 … num_nodes − 1.
        num_nodes: number of destination rows (atoms).
        num_src: number of source rows (default ``num_nodes``).
        row: the row of each edge in a per-row tensor (SchNet's filters are computed once per
            undirected pair, both edges of the pair reading its row), in 0 … num_rows − 1;
            ``None``: edge e reads row e.
        num_rows: number of rows (required with ``row``).
        row_edge: for each row, one edge that reads it (the pair's representative), so that
            ``row_src = edge_src[row_edge]`` and ``row_dst = edge_dst[row_edge]`` are known.

    Shapes: edge_src, edge_dst, row: [n_edges] int64 or int32; row_edge: [num_rows]

    >>> e = Edges(torch.tensor([1, 0, 2]), torch.tensor([0, 1, 0]), num_nodes=3)
    >>> order, ptr = e.prepared().by_dst
    >>> order.tolist(), ptr.tolist()
    ([0, 2, 1], [0, 2, 3, 3])
    """

    def __init__(
        self,
        edge_src: Tensor,
        edge_dst: Tensor,
        num_nodes: int,
        num_src: int | None = None,
        row: Tensor | None = None,
        num_rows: int | None = None,
        row_edge: Tensor | None = None,
    ) -> None:
        if row is not None and num_rows is None:
            raise ValueError("Edges: give num_rows with row")
        self.num_nodes = int(num_nodes)
        self.num_src = self.num_nodes if num_src is None else int(num_src)
        self.num_edges = int(edge_src.shape[0]) if edge_src.dim() == 1 else -1
        self.num_rows = self.num_edges if row is None else int(num_rows)
        # the sizes as given, by slot (x, y, w, g rows): while torch.jit.trace records, sizes
        # read from shapes are 0-dim tensors, which an op it records (conv_partial) must keep
        # as functions of the inputs (the ints above would be constants of the trace)
        self.given_sizes = (
            num_nodes if num_src is None else num_src,
            edge_src.shape[0],
            edge_src.shape[0] if row is None else num_rows,
            num_nodes,
        )
        self._tensors = (edge_src, edge_dst, row, row_edge)
        self._versions = tuple(None if t is None else t._version for t in self._tensors)
        self._prepared: Prepared | None = None

    @classmethod
    def one_per_row(cls, n: int) -> Edges:
        """n edges, edge r from node r to node r, all reading weight row 0: a per-row product
        (each row its own node) with one set of weights shared by every row."""
        rows = torch.arange(n)
        return cls(rows, rows, n, n, torch.zeros_like(rows), 1)

    def prepared(self) -> Prepared:
        """The checked copies and groupings (computed on the first call, then kept; not kept
        when made in inference mode, whose tensors could not serve autograd later)."""
        if self._prepared is None:
            if torch.is_inference_mode_enabled():
                return self._prepare()
            self._prepared = self._prepare()  # two threads may both compute it: same result
        return self._prepared

    def _prepare(self) -> Prepared:
        edge_src, edge_dst, row, row_edge = self._tensors
        src = index_tensor(edge_src, "edge_src", self.num_src)
        dst = index_tensor(edge_dst, "edge_dst", self.num_nodes, self.num_edges)
        by_row = row_src = row_dst = None
        if row is not None:
            row = index_tensor(row, "row", self.num_rows, self.num_edges)
            by_row = _csr(row, self.num_rows)
        if row_edge is not None:
            row_edge = index_tensor(row_edge, "row_edge", self.num_edges, self.num_rows)
            row_src, row_dst = src[row_edge], dst[row_edge]
        return Prepared(
            src,
            dst,
            row,
            _csr(dst, self.num_nodes),
            _csr(src, self.num_src),
            by_row,
            row_src,
            row_dst,
        )

    @property
    def has_rows(self) -> bool:
        """Whether edges share rows (``row`` was given)."""
        return self._tensors[2] is not None

    def matches(self, edge_src: Tensor, edge_dst: Tensor, row: Tensor | None = None) -> bool:
        """Whether these are the (unmodified) tensors the edges were made from."""
        made = self._tensors
        return (
            made[0] is edge_src
            and made[1] is edge_dst
            and made[2] is row
            and self._versions[:3]
            == (edge_src._version, edge_dst._version, None if row is None else row._version)
        )

    def check_matches(
        self,
        edge_src: Tensor,
        edge_dst: Tensor,
        row: Tensor | None,
        num_src: int,
        num_nodes: int,
        num_rows: int | None = None,
    ) -> None:
        """Raise ``ValueError`` unless these edges were made from these tensors and sizes."""
        if not self.matches(edge_src, edge_dst, row):
            raise ValueError(
                "edges: made from other (or since modified) edge tensors than the ones "
                "passed; make Edges again from these"
            )
        if (self.num_src, self.num_nodes) != (num_src, num_nodes) or (
            num_rows is not None and num_rows != self.num_rows
        ):
            raise ValueError(
                f"edges: made for {self.num_src} sources, {self.num_nodes} nodes and "
                f"{self.num_rows} rows, used with {num_src}, {num_nodes} and {num_rows}"
            )

    def __repr__(self) -> str:
        rows = f", num_rows={self.num_rows}" if self.has_rows else ""
        return (
            f"Edges(num_edges={self.num_edges}, num_src={self.num_src}, "
            f"num_nodes={self.num_nodes}{rows})"
        )
