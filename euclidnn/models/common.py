"""Pieces every potential shares: species lookup, per-species scale and shift, activations."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from euclidnn import kernels
from euclidnn.data.graph import Graph

__all__ = [
    "pair_edges",
    "SpeciesIndex",
    "PerSpeciesScaleShift",
    "shifted_softplus",
    "check_species",
]

_MAX_Z = 118


def check_species(species: Sequence[int], owner: str) -> tuple[int, ...]:
    """Validate a tuple of atomic numbers (1…118, distinct) and return it as a tuple of ints."""
    out = tuple(int(z) for z in species)
    if not out:
        raise ValueError(f"{owner}.species: give at least one atomic number")
    if len(set(out)) != len(out) or any(not 1 <= z <= _MAX_Z for z in out):
        raise ValueError(
            f"{owner}.species must be distinct atomic numbers in 1..{_MAX_Z}, got {out}"
        )
    return out


def shifted_softplus(x: Tensor) -> Tensor:
    """SchNet's activation ssp(x) = ln(½ eˣ + ½) = softplus(x) − ln 2 (so ssp(0) = 0).

    >>> shifted_softplus(torch.zeros(2))
    tensor([0., 0.])
    """
    return nn.functional.softplus(x) - math.log(2.0)


class SpeciesIndex(nn.Module):
    """Atomic numbers → rows of the model's species tables, by a buffer lookup.

    Data stay model-agnostic (a graph carries atomic numbers); an atomic number the model was
    not built for is an error naming it (not checked while ``torch.compile`` or
    ``torch.jit.trace`` records the lookup: a traced check would be a constant; the
    TorchScript export checks the numbers before they reach the traced model).

    Shapes: numbers: [n_atoms] int64 → [n_atoms] int64 in 0 … len(species) − 1

    >>> SpeciesIndex((1, 8))(torch.tensor([8, 1, 1])).tolist()
    [1, 0, 0]
    """

    def __init__(self, species: Sequence[int]) -> None:
        super().__init__()
        self.species = tuple(int(z) for z in species)
        table = torch.full((_MAX_Z + 1,), -1, dtype=torch.int64)
        table[list(self.species)] = torch.arange(len(self.species))
        self.register_buffer("table", table, persistent=False)

    def of_graph(self, graph) -> Tensor:
        """The rows of a :class:`~euclidnn.data.Graph`'s atoms, computed once per graph
        (:meth:`~euclidnn.data.Graph.derived`; the same for every model of these species).

        Shapes: → [n_atoms] int64
        """
        return graph.derived(f"species rows {self.species}", lambda g: self(g.numbers))

    def forward(self, numbers: Tensor) -> Tensor:
        index = self.table[numbers]
        tracing = torch.compiler.is_compiling() or torch.jit.is_tracing()
        if not tracing and bool((index < 0).any()):
            unknown = sorted(set(numbers[index < 0].tolist()))
            raise ValueError(
                f"atomic numbers {unknown} are not among the model's species {self.species}"
            )
        return index


class PerSpeciesScaleShift(nn.Module):
    """Atomic energy e_i → s_{Z_i} e_i + b_{Z_i}, per-species scale s (eV) and shift b (eV).

    The shift is the energy of an isolated atom (a least-squares fit of the per-species energies
    of the data set is the usual estimate); the scale makes the network's unit-variance output
    match the data (e.g. the force RMS). Buffers by default, as in NequIP; ``trainable`` makes
    them parameters.

    Shapes: energy: [n_atoms], species: [n_atoms] → [n_atoms] eV
    """

    def __init__(
        self,
        num_species: int,
        scales: Sequence[float] | float | None = None,
        shifts: Sequence[float] | float | None = None,
        trainable: bool = False,
    ) -> None:
        super().__init__()
        scale = _per_species(scales, num_species, 1.0, "scales")
        shift = _per_species(shifts, num_species, 0.0, "shifts")
        if trainable:
            self.scales, self.shifts = nn.Parameter(scale), nn.Parameter(shift)
        else:
            self.register_buffer("scales", scale)
            self.register_buffer("shifts", shift)

    def forward(self, energy: Tensor, species: Tensor) -> Tensor:
        return (
            energy * self.scales.to(energy.dtype)[species] + self.shifts.to(energy.dtype)[species]
        )


def _per_species(value, n: int, default: float, name: str) -> Tensor:
    if value is None:
        value = default
    if isinstance(value, (int, float)):
        value = [float(value)] * n
    value = [float(v) for v in value]
    if len(value) != n:
        raise ValueError(f"energy_{name}: expected one value per species ({n}), got {len(value)}")
    return torch.tensor(value, dtype=torch.get_default_dtype())


def pair_edges(graph: Graph) -> kernels.Edges:
    """The graph's edges for the kernels, each reading the row of its undirected pair in a
    per-pair tensor such as radial filters (:meth:`~euclidnn.data.Graph.edge_pairs`); made
    once per graph (SchNet's filters, NequIP's radial weights at inference)."""

    def make(g: Graph) -> kernels.Edges:
        pair_edge, edge_pair = g.edge_pairs()
        n = g.numbers.shape[0]
        return kernels.Edges(
            g.edge_src, g.edge_dst, n, n, edge_pair, pair_edge.shape[0], row_edge=pair_edge
        )

    return graph.derived("pair edges", make)
