"""euclidnn: E(3)-equivariant neural networks and machine-learned interatomic potentials.

The curated top level; everything else lives in the subpackages ``o3``, ``nn``, ``data``,
``models`` and ``testing``.

>>> import euclidnn
>>> euclidnn.Irreps("2x0e + 1o").dim
5

The names here are imported on first use (PEP 562), so that ``import euclidnn`` alone loads
neither torch nor its OpenMP runtime: the command line reads OpenMP's environment variables
before either is loaded, and ``euclidnn.cli`` sets its defaults there first.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the names are, for type checkers and readers
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

#: public name -> the subpackage that defines it
_HOMES = {
    "Graph": "data",
    "Structure": "data",
    "Targets": "data",
    "read": "data",
    "NequIP": "models",
    "NequIPConfig": "models",
    "Prediction": "models",
    "SchNet": "models",
    "SchNetConfig": "models",
    "predict": "models",
    "Irrep": "o3",
    "Irreps": "o3",
}


def __getattr__(name: str):
    """``euclidnn.Irreps`` and the other names of ``__all__``, and the subpackages
    (``euclidnn.models`` after a bare ``import euclidnn``), imported when first asked for."""
    if name in _HOMES:
        value = getattr(importlib.import_module(f"euclidnn.{_HOMES[name]}"), name)
    elif _is_submodule(name):
        value = importlib.import_module(f"euclidnn.{name}")
    else:
        raise AttributeError(f"module 'euclidnn' has no attribute {name!r}")
    globals()[name] = value  # found once; later lookups do not come here
    return value


def _is_submodule(name: str) -> bool:
    return (
        name.isidentifier()
        and not name.startswith("_")
        and importlib.util.find_spec(f"euclidnn.{name}") is not None
    )


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
