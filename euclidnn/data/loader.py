"""A torch Dataset of (Graph, Targets) pairs and the collate function for DataLoader."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from .graph import Graph, collate
from .structure import Structure
from .targets import Targets

__all__ = ["AtomsDataset", "collate_batch", "make_loader"]


class AtomsDataset(Dataset):
    """Structures as ``(Graph, Targets)`` pairs; neighbour lists computed once, up front.

    Args:
        structures: the structures (eV, Å).
        r_max: neighbour cutoff, Å.
        dtype: float dtype of positions and labels (default ``torch.get_default_dtype()``).

    >>> s = Structure([1, 1], [[0, 0, 0], [0, 0, 0.74]], energy=-1.0)
    >>> data = AtomsDataset([s, s, s], r_max=2.0)
    >>> graph, targets = collate_batch([data[0], data[2]])
    >>> graph.num_graphs, targets.energy.tolist()
    (2, [-1.0, -1.0])
    """

    def __init__(
        self, structures: Sequence[Structure], r_max: float, dtype: torch.dtype | None = None
    ):
        self.r_max = float(r_max)
        self.items = [
            (Graph.from_structure(s, r_max, dtype), Targets.from_structure(s, dtype))
            for s in structures
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Graph, Targets]:
        return self.items[index]


def collate_batch(items: Sequence[tuple[Graph, Targets]]) -> tuple[Graph, Targets]:
    """``collate_fn`` for ``torch.utils.data.DataLoader``: list of pairs → one batched pair."""
    graphs, targets = zip(*items)
    return collate(graphs), Targets.collate(targets)


def make_loader(
    dataset: AtomsDataset | Sequence[tuple[Graph, Targets]],
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
    **kwargs,
) -> DataLoader:
    """DataLoader yielding batched ``(Graph, Targets)``; ``seed`` fixes the shuffling order.

    Extra keyword arguments go to ``DataLoader`` (``num_workers``, ``drop_last``, …).
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate_batch,
        generator=generator,
        **kwargs,
    )
