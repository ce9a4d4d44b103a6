"""euclidnn: E(3)-equivariant neural networks and machine-learned interatomic potentials.

The curated top level; everything else lives in the subpackages ``o3``, ``nn``, ``data``,
``models`` and ``testing``.

>>> import euclidnn
>>> euclidnn.Irreps("2x0e + 1o").dim
5
"""

from euclidnn.data import Graph, Structure, Targets, read
from euclidnn.models import NequIP, NequIPConfig, Prediction, SchNet, SchNetConfig, predict
from euclidnn.o3 import Irrep, Irreps

__version__ = "0.1.0"

__all__ = [
    "Graph",
    "Irrep",
    "Irreps",
    "NequIP",
    "NequIPConfig",
    "Prediction",
    "SchNet",
    "SchNetConfig",
    "Structure",
    "Targets",
    "predict",
    "read",
]
