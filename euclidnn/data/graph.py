"""Graph: the one immutable model input — atoms, cells and neighbour edges as tensors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

import numpy as np
import torch
import torch.utils._pytree as pytree
from torch import Tensor

from .neighbors import neighbor_list
from .pairs import edge_pairs
from .structure import Structure

__all__ = ["Graph", "collate"]

_T = TypeVar("_T")
_TOPOLOGY = ("numbers", "batch", "edge_src", "edge_dst", "edge_shift")  # what derived data read


@dataclass(frozen=True)
class Graph:
    """Atoms and their neighbour edges; one structure or a batch of them.

    Edge e points from the neighbour ``edge_src[e]`` (j) to the centre ``edge_dst[e]`` (i);
    messages flow src → dst, and
    ``edge_vec = positions[edge_src] − positions[edge_dst] + edge_shift @ cell[batch]``.
    Lengths in Å. Edge lists are full (both directions). Build with :meth:`from_structure`,
    :meth:`from_structures` or :meth:`from_ase`; batch with :func:`collate`; modify with
    :func:`dataclasses.replace`, :meth:`with_positions` or :meth:`deformed` — never in place.

    A ``Graph`` is a pytree node (``torch.utils._pytree``), so ``torch.compile`` and
    ``torch.export`` see through it. Index structures derived from its edges (undirected pairs,
    the kernels' edge orders) are computed on first use and kept with it (:meth:`derived`).

    Shapes:
        positions: [n_atoms, 3] float, Å
        numbers: [n_atoms] int64, atomic numbers
        cell: [n_graphs, 3, 3] float, rows are lattice vectors, Å; zeros if not periodic
        pbc: [n_graphs, 3] bool
        batch: [n_atoms] int64, graph index of each atom (sorted)
        edge_src, edge_dst: [n_edges] int64
        edge_shift: [n_edges, 3] float (integer values), lattice translations of edge_src
        num_atoms: [n_graphs] int64, atoms per graph

    >>> s = Structure([1, 1], [[0, 0, 0], [0, 0, 0.74]])
    >>> g = Graph.from_structure(s, r_max=2.0, dtype=torch.float64)
    >>> g.num_graphs, g.edge_src.tolist(), g.edge_dst.tolist()
    (1, [1, 0], [0, 1])
    >>> g.edge_vectors()[0].tolist()
    [0.0, 0.0, 0.74]
    """

    positions: Tensor
    numbers: Tensor
    cell: Tensor
    pbc: Tensor
    batch: Tensor
    edge_src: Tensor
    edge_dst: Tensor
    edge_shift: Tensor
    num_atoms: Tensor
    # name -> (the topology tensors and their versions, value); see derived()
    _derived: dict[str, tuple[tuple, Any]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_graphs(self) -> int:
        """Number of structures in the batch."""
        return self.cell.shape[0]

    @property
    def num_edges(self) -> int:
        """Number of (directed) edges."""
        return self.edge_src.shape[0]

    def edge_vectors(self) -> Tensor:
        """Edge vectors, differentiable in ``positions`` and ``cell``.

        Shapes: → [n_edges, 3] Å
        """
        cell = self.cell.index_select(
            0, self.batch.index_select(0, self.edge_src)
        )  # [n_edges, 3, 3]
        shift = (self.edge_shift.unsqueeze(-1) * cell).sum(-2)  # Σ_i S_i cell_ij (no tiny bmm)
        # index_select rather than [] indexing: its backward is index_add_, not index_put_
        return (
            self.positions.index_select(0, self.edge_src)
            - self.positions.index_select(0, self.edge_dst)
            + shift
        )

    def derived(self, name: str, compute: Callable[[Graph], _T]) -> _T:
        """``compute(self)``, computed once and kept with the graph under ``name``.

        For data derived from the graph's topology alone — ``numbers``, ``batch``, ``edge_src``,
        ``edge_dst``, ``edge_shift``, never positions or cell — such as undirected edge pairs
        or the kernels' edge orders: every layer of a model and every force evaluation of an MD
        step on the same edges reuses them. Copies made with :func:`dataclasses.replace`,
        :meth:`with_positions` or :meth:`deformed` share the store; an entry is used only while those five tensors are
        the same objects, unmodified (``Tensor._version``), so a copy with other edges, or
        edges changed in place, computes its own. Nothing is kept while ``torch.compile``
        traces, nor in inference mode (its tensors could not serve autograd later).

        >>> s = Structure([1, 1], [[0, 0, 0], [0, 0, 0.74]])
        >>> g = Graph.from_structure(s, r_max=2.0)
        >>> g.derived("edges", lambda g: g.num_edges) + g.derived("edges", lambda g: -1)
        4
        """
        if torch.compiler.is_compiling():
            return compute(self)
        tensors = [getattr(self, f) for f in _TOPOLOGY]
        entry = self._derived.get(name)  # one read: entries are replaced, never changed
        if entry is not None and all(
            a is b and version == b._version for (a, version), b in zip(entry[0], tensors)
        ):
            return entry[1]
        if torch.is_inference_mode_enabled():
            return compute(self)
        stamp = tuple((t, t._version) for t in tensors)
        value = compute(self)
        self._derived[name] = (stamp, value)
        return value

    def edge_pairs(self) -> tuple[Tensor, Tensor]:
        """The undirected pairs of the edges, ``(pair_edge, edge_pair)``: see
        :func:`~euclidnn.data.pairs.edge_pairs`; computed once per graph.

        Shapes: → ([n_pairs], [n_edges]) int64
        """
        return self.derived(
            "edge_pairs", lambda g: edge_pairs(g.edge_src, g.edge_dst, g.edge_shift)
        )

    def deformed(self, positions: Tensor, strain: Tensor) -> Graph:
        """Copy with positions and cell under a homogeneous strain: r → r (1 + sym ε).

        The derivative of an energy with respect to ``strain`` at zero strain, divided by the
        cell volume, is the stress (Knuth et al. 2015). Only the symmetric part of ``strain``
        acts, so the result is unchanged by rotations.

        Args:
            positions: positions to deform (e.g. ``graph.positions`` with ``requires_grad``).
            strain: strain ε per graph, dimensionless.

        Shapes: positions: [n_atoms, 3], strain: [n_graphs, 3, 3] → Graph

        >>> g = Graph.from_structure(Structure([1], [[1.0, 2.0, 3.0]], cell=np.eye(3),
        ...                                    pbc=True), r_max=1.5, dtype=torch.float64)
        >>> strain = torch.zeros(1, 3, 3, dtype=torch.float64)
        >>> strain[0, 0, 0] = 0.1
        >>> d = g.deformed(g.positions, strain)
        >>> d.positions.tolist(), d.cell[0, 0].tolist()
        ([[1.1, 2.0, 3.0]], [1.1, 0.0, 0.0])
        """
        symmetric = 0.5 * (strain + strain.transpose(-1, -2))
        eye = torch.eye(3, dtype=symmetric.dtype, device=symmetric.device)
        transform = eye + symmetric  # [n_graphs, 3, 3]
        new_positions = torch.einsum("ni,nij->nj", positions, transform[self.batch])
        new_cell = torch.bmm(self.cell, transform)
        return replace(self, positions=new_positions, cell=new_cell)

    def with_positions(self, positions: Tensor) -> Graph:
        """Copy with other ``positions`` and everything else shared: the cell, the edge
        tensors and the store of :meth:`derived` data — the next step of an MD run on the same
        neighbour list, whose edge pairs and kernels' edge orders are then computed once.

        A derived entry stays valid for the copy because it is checked against the edge
        tensors themselves (same objects, unmodified); positions never enter one. For other
        edges build a new graph (its store starts empty).

        Shapes: positions: [n_atoms, 3] Å → Graph

        >>> s = Structure([1, 1], [[0, 0, 0], [0, 0, 0.74]])
        >>> g = Graph.from_structure(s, r_max=2.0)
        >>> moved = g.with_positions(g.positions * 1.1)
        >>> moved.edge_vectors()[0, 2].item() > 0.8, moved.edge_src is g.edge_src
        (True, True)
        >>> moved.edge_pairs() is g.edge_pairs()  # computed once, for both
        True
        """
        if positions.shape != self.positions.shape:
            raise ValueError(
                f"with_positions: positions of shape {tuple(positions.shape)} for a graph of "
                f"{self.positions.shape[0]} atoms"
            )
        return replace(self, positions=positions)

    def to(
        self,
        device: torch.device | str | torch.dtype | None = None,
        dtype: torch.dtype | None = None,
    ) -> Graph:
        """Copy on ``device``; floating-point tensors cast to ``dtype`` (integers untouched).

        As for tensors and modules, a dtype may come first: ``graph.to(torch.float64)``.

        >>> s = Structure([1, 1], [[0, 0, 0], [0, 0, 0.74]])
        >>> g = Graph.from_structure(s, r_max=2.0).to(torch.float64)
        >>> g.positions.dtype, g.edge_src.dtype
        (torch.float64, torch.int64)
        """
        if isinstance(device, torch.dtype):
            if dtype is not None:
                raise TypeError("Graph.to: give the dtype once")
            device, dtype = None, device
        changes = {"_derived": self._derived}  # kept where the topology tensors stay the same
        for f in fields(self):
            if f.name == "_derived":
                continue
            value = getattr(self, f.name)
            cast = dtype if (dtype is not None and value.is_floating_point()) else None
            changes[f.name] = value.to(device=device, dtype=cast)
        return Graph(**changes)

    @classmethod
    def from_structure(
        cls, structure: Structure, r_max: float, dtype: torch.dtype | None = None
    ) -> Graph:
        """Graph of one structure with the neighbour list at ``r_max`` (Å).

        The cell of a structure periodic in no direction is stored as zeros (CONVENTIONS.md).
        ``dtype`` defaults to ``torch.get_default_dtype()``.
        """
        dtype = dtype or torch.get_default_dtype()
        src, dst, shift = neighbor_list(structure.positions, structure.cell, structure.pbc, r_max)
        n = structure.num_atoms
        cell = structure.cell if structure.pbc.any() else np.zeros((3, 3))
        return cls(
            positions=torch.tensor(structure.positions, dtype=dtype),
            numbers=torch.tensor(structure.numbers, dtype=torch.int64),
            cell=torch.tensor(cell, dtype=dtype).reshape(1, 3, 3),
            pbc=torch.tensor(structure.pbc, dtype=torch.bool).reshape(1, 3),
            batch=torch.zeros(n, dtype=torch.int64),
            edge_src=torch.from_numpy(src),
            edge_dst=torch.from_numpy(dst),
            edge_shift=torch.tensor(shift, dtype=dtype),
            num_atoms=torch.tensor([n], dtype=torch.int64),
        )

    @classmethod
    def from_structures(
        cls, structures: Sequence[Structure], r_max: float, dtype: torch.dtype | None = None
    ) -> Graph:
        """One batched graph of several structures (neighbour lists at ``r_max``, Å)."""
        return collate([cls.from_structure(s, r_max, dtype) for s in structures])

    @classmethod
    def from_ase(cls, atoms, r_max: float, dtype: torch.dtype | None = None) -> Graph:
        """Graph of an ``ase.Atoms`` or a list of them (neighbour lists at ``r_max``, Å).

        >>> from ase.build import bulk
        >>> g = Graph.from_ase(bulk("Si", "diamond", a=5.43), r_max=2.5)
        >>> g.num_edges  # 4 nearest neighbours at 2.35 Å, for each of the 2 atoms
        8
        """
        if isinstance(atoms, (list, tuple)):
            return cls.from_structures([Structure.from_ase(a) for a in atoms], r_max, dtype)
        return cls.from_structure(Structure.from_ase(atoms), r_max, dtype)

    @staticmethod
    def collate(graphs: Sequence[Graph]) -> Graph:
        """See :func:`collate`."""
        return collate(graphs)


def collate(graphs: Sequence[Graph]) -> Graph:
    """Concatenate graphs into one batch: atom indices of edges offset, ``batch`` rebuilt.

    Graphs may themselves be batches; the order of atoms, edges and graphs is kept.

    >>> s = Structure([1, 1], [[0, 0, 0], [0, 0, 0.74]])
    >>> g = collate([Graph.from_structure(s, 2.0)] * 3)
    >>> g.batch.tolist(), g.edge_src.tolist()
    ([0, 0, 1, 1, 2, 2], [1, 0, 3, 2, 5, 4])
    """
    if len(graphs) == 0:
        raise ValueError("collate: need at least one graph")
    if len(graphs) == 1:
        return graphs[0]
    atom_offsets = np.cumsum([0] + [g.positions.shape[0] for g in graphs[:-1]])
    graph_offsets = np.cumsum([0] + [g.num_graphs for g in graphs[:-1]])
    return Graph(
        positions=torch.cat([g.positions for g in graphs]),
        numbers=torch.cat([g.numbers for g in graphs]),
        cell=torch.cat([g.cell for g in graphs]),
        pbc=torch.cat([g.pbc for g in graphs]),
        batch=torch.cat([g.batch + int(o) for g, o in zip(graphs, graph_offsets)]),
        edge_src=torch.cat([g.edge_src + int(o) for g, o in zip(graphs, atom_offsets)]),
        edge_dst=torch.cat([g.edge_dst + int(o) for g, o in zip(graphs, atom_offsets)]),
        edge_shift=torch.cat([g.edge_shift for g in graphs]),
        num_atoms=torch.cat([g.num_atoms for g in graphs]),
    )


pytree.register_dataclass(
    Graph, drop_field_names=["_derived"], serialized_type_name="euclidnn.data.Graph"
)
