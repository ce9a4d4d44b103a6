"""Atomic data: structures, neighbour lists, graphs, targets, readers, splits, statistics,
starting geometries by name (:func:`load_molecule`).

Flow: file → ``read`` → ``Structure`` (numpy, eV/Å) → ``neighbor_list`` → ``Graph`` (torch)
→ ``collate`` → model; labels travel alongside as ``Targets``.
"""

from .datasets import list_datasets, load_dataset
from .geometry_checks import check_cutoff, check_positions
from .graph import Graph, collate
from .loader import AtomsDataset, collate_batch, make_loader
from .molecules import list_molecules, load_molecule
from .neighbors import neighbor_list
from .readers import read, read_npz
from .splits import Split, split, split_blocks, split_indices
from .stats import avg_num_neighbors, energy_shifts, force_rms
from .structure import Structure
from .targets import Targets

__all__ = [
    "AtomsDataset",
    "Graph",
    "Split",
    "Structure",
    "Targets",
    "avg_num_neighbors",
    "check_cutoff",
    "check_positions",
    "collate",
    "collate_batch",
    "list_datasets",
    "list_molecules",
    "load_dataset",
    "load_molecule",
    "energy_shifts",
    "force_rms",
    "make_loader",
    "neighbor_list",
    "read",
    "read_npz",
    "split",
    "split_blocks",
    "split_indices",
]
