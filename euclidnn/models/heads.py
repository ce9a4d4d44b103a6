"""Equivariant per-structure outputs (dipoles, polarizabilities, …) on top of NequIP features."""

from __future__ import annotations

from dataclasses import dataclass

import torch  # noqa: F401 (used by the doctests, which run in this module's globals)
from torch import Tensor, nn

from euclidnn.data.graph import Graph
from euclidnn.models.interface import Potential
from euclidnn.models.nequip import NequIP, NequIPConfig
from euclidnn.nn.scatter import scatter_sum
from euclidnn.o3.cartesian import CartesianTensor
from euclidnn.o3.irreps import Irreps
from euclidnn.o3.linear import Linear

__all__ = ["TensorHead", "TensorHeadConfig", "symmetric_matrix"]


@dataclass(frozen=True)
class TensorHeadConfig:
    """What rebuilds a :class:`TensorHead`: its trunk's config and its output irreps.

    Attributes:
        trunk: the :class:`NequIPConfig` of the trunk (a mapping of its fields is accepted).
        irreps_out: irreps of the output per structure, e.g. ``"1o"`` or ``"0e+2e"``.
    """

    trunk: NequIPConfig
    irreps_out: str

    def __post_init__(self) -> None:
        if isinstance(self.trunk, dict):
            object.__setattr__(self, "trunk", NequIPConfig(**self.trunk))
        object.__setattr__(self, "irreps_out", str(Irreps(self.irreps_out)))


class TensorHead(Potential, nn.Module):
    r"""Any irreps per structure: y = Σ_i W h_i, h the equivariant features of a NequIP trunk.

    h are the features after all but the last of the trunk's layers (irreps
    ``trunk.irreps_features``); W is an equivariant :class:`~euclidnn.o3.Linear`, so y
    transforms as ``irreps_out`` under O(3) (e.g. ``"1o"`` for a dipole in e·Å, ``"0e + 2e"``
    for a polarizability in Å³, see :func:`symmetric_matrix`). Every irrep of ``irreps_out``
    must occur in the trunk's features (``lmax ≥ 2`` for 2e, ``parity=True`` or odd l for 1o).
    The sum over atoms makes the output extensive; the trunk's weights are shared (train them
    jointly or freeze them).

    Args:
        trunk: a :class:`NequIP` with at least two layers.
        irreps_out: irreps of the output per structure.

    Shapes: graph (n_atoms, n_graphs) → [n_graphs, irreps_out.dim]

    >>> from euclidnn.models import NequIPConfig
    >>> trunk = NequIP(NequIPConfig(species=(1, 8), num_features=4, num_layers=2, lmax=2))
    >>> head = TensorHead(trunk, "0e + 2e")
    >>> from ase.build import molecule
    >>> symmetric_matrix(head(Graph.from_ase(molecule("H2O"), r_max=5.0))).shape
    torch.Size([1, 3, 3])
    """

    predicts_energy = False

    def __init__(self, trunk: NequIP, irreps_out: Irreps | str) -> None:
        super().__init__()
        self.trunk = trunk
        self.irreps_out = Irreps(irreps_out)
        if len(trunk.layers) < 2:
            raise ValueError(
                "TensorHead needs a NequIP trunk with num_layers ≥ 2 (its last layer is scalar-only)"
            )
        missing = [str(ir) for _, ir in self.irreps_out if ir not in trunk.irreps_features]
        if missing:
            raise ValueError(
                f"TensorHead: irreps {missing} are not among the trunk's features {trunk.irreps_features}; "
                "raise lmax or turn parity on"
            )
        self.linear = Linear(trunk.irreps_features, self.irreps_out)

    @classmethod
    def from_config(cls, config: TensorHeadConfig) -> TensorHead:
        """A new head (random weights) on a new trunk, as ``config`` describes."""
        return cls(NequIP(config.trunk), config.irreps_out)

    @property
    def config(self) -> TensorHeadConfig:
        """The config that rebuilds this head (with :meth:`from_config`)."""
        return TensorHeadConfig(self.trunk.config, str(self.irreps_out))

    @property
    def cutoff(self) -> float:
        return self.trunk.cutoff

    @property
    def num_hops(self) -> int:
        return max(self.trunk.num_hops - 1, 0)  # the features before the trunk's last layer

    @property
    def species(self) -> tuple[int, ...]:
        return self.trunk.species

    def species_embeddings(self) -> Tensor:
        return self.trunk.species_embeddings()

    def forward(self, graph: Graph) -> Tensor:
        h, _ = self.trunk.features(graph)  # [n_atoms, irreps_features.dim]
        return scatter_sum(self.linear(h), graph.batch, dim_size=graph.num_graphs)


def symmetric_matrix(x: Tensor) -> Tensor:
    """A ``0e + 2e`` vector (6 numbers) → the symmetric 3×3 Cartesian tensor it represents.

    Uses :class:`~euclidnn.o3.CartesianTensor` ``("ij=ji")``, so the result transforms as
    R T Rᵀ when x transforms with D^{0e+2e}(R).

    Shapes: x: [..., 6] → [..., 3, 3]

    >>> m = symmetric_matrix(torch.tensor([1.0, 0, 0, 0, 0, 0]))
    >>> torch.allclose(m, m[0, 0] * torch.eye(3))
    True
    """
    return CartesianTensor("ij=ji").to_cartesian(x)
