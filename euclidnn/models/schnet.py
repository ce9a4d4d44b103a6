"""SchNet: continuous-filter convolutions on interatomic distances (an invariant potential)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from euclidnn import kernels
from euclidnn.data.graph import Graph
from euclidnn.models.common import (
    PerSpeciesScaleShift,
    SpeciesIndex,
    check_species,
    pair_edges,
    shifted_softplus,
)
from euclidnn.models.interface import Potential
from euclidnn.nn.conv import continuous_filter_conv
from euclidnn.nn.cutoff import cosine_cutoff
from euclidnn.nn.radial import gaussian_basis, gaussian_centres
from euclidnn.nn.scatter import scatter_sum

__all__ = ["SchNetConfig", "SchNet", "SchNetInteraction"]


@dataclass(frozen=True)
class SchNetConfig:
    """Hyperparameters of :class:`SchNet` (every field has a default; change few).

    Attributes:
        species: atomic numbers the model knows, e.g. ``(1, 6, 8)``; one embedding row each.
            Default ``(1, 6, 7, 8)`` (organic molecules).
        r_max: cutoff radius in Å (default 5.0). The papers use 5 Å for molecules (MD17, QM9)
            and 5–6 Å for bulk; larger costs ∝ r_max³ in edges.
        num_features: atom-wise feature width F (default 128, as in the papers; 64 is a good
            CPU setting).
        num_filters: filter width of the convolutions (default ``None`` = ``num_features``).
        num_interactions: number of interaction blocks T (default 3; the papers use 3 for
            MD17 and 6 for QM9 and bulk — 1…6 is the sensible range).
        num_basis: number of Gaussians K in the distance expansion (default 25, spread over
            [0, r_max]; the 2017 paper used 300 Gaussians 0.1 Å apart on [0, 30] Å with
            γ = 10 Å⁻², SchNetPack uses 20–50 within the cutoff).
        gamma: Gaussian width γ in Å⁻² (default ``None`` = 1 / (2 Δμ²), Δμ the spacing).
        energy_scales: per-species scale of the atomic energy in eV, one per species or one
            number (default ``None`` = 1); e.g. the force RMS of the data.
        energy_shifts: per-species energy shift in eV (default ``None`` = 0); e.g. the
            least-squares per-species energies of the data set.
    """

    species: tuple[int, ...] = (1, 6, 7, 8)
    r_max: float = 5.0
    num_features: int = 128
    num_filters: int | None = None
    num_interactions: int = 3
    num_basis: int = 25
    gamma: float | None = None
    energy_scales: tuple[float, ...] | float | None = None
    energy_shifts: tuple[float, ...] | float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "species", check_species(self.species, "SchNetConfig"))
        for name in ("energy_scales", "energy_shifts"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (int, float)):
                object.__setattr__(self, name, tuple(float(v) for v in value))
        if self.r_max <= 0:
            raise ValueError(f"SchNetConfig.r_max must be positive (Å), got {self.r_max}")
        if self.num_interactions < 1:
            raise ValueError(
                f"SchNetConfig.num_interactions must be ≥ 1, got {self.num_interactions}"
            )
        if self.num_features < 1 or self.num_basis < 2 or (self.num_filters or 1) < 1:
            raise ValueError(
                f"SchNetConfig: num_features ({self.num_features}) and num_filters must be ≥ 1, "
                f"num_basis ({self.num_basis}) ≥ 2"
            )


def _dense(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, bias=bias)
    nn.init.xavier_uniform_(layer.weight)  # SchNetPack's initialisation
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class SchNetInteraction(nn.Module):
    r"""One SchNet interaction block (Schütt et al. 2017, Fig. 2), returning the update v.

    x = W_in h,   W_ij = f_cut(r_ij) · Dense(ssp(Dense(e(r_ij)))),
    m_i = Σ_j x_j ⊙ W_ij  (continuous-filter convolution, j = edge_src → i = edge_dst),
    v_i = Dense(ssp(Dense(m_i)))

    The filter W depends on the distance only, so it is computed by :meth:`filter` (once per
    undirected pair in :class:`SchNet`) and passed to :meth:`forward` with the row of each edge.

    ``edges`` (optional) are the same edges prepared once for the kernel
    (:class:`euclidnn.kernels.Edges` with ``filter_row`` as rows).

    Shapes: h: [n_atoms, F], filters: [n_rows, num_filters], edge_src, edge_dst: [n_edges],
    filter_row: [n_edges] or None (row e for edge e) → [n_atoms, F]
    """

    def __init__(self, num_features: int, num_filters: int, num_basis: int) -> None:
        super().__init__()
        self.in2filter = _dense(num_features, num_filters, bias=False)
        self.filter1 = _dense(num_basis, num_filters)
        self.filter2 = _dense(num_filters, num_filters)
        self.out1 = _dense(num_filters, num_features)
        self.out2 = _dense(num_features, num_features)

    def filter(self, radial: Tensor, cutoff: Tensor) -> Tensor:
        """Continuous filter W(r) = f_cut(r) · Dense(ssp(Dense(e(r)))) of some distances r.

        Shapes: radial: [n, K] (e(r)), cutoff: [n] (f_cut(r)) → [n, num_filters]
        """
        return self.filter2(shifted_softplus(self.filter1(radial))) * cutoff[:, None]

    def forward(
        self,
        h: Tensor,
        filters: Tensor,
        edge_src: Tensor,
        edge_dst: Tensor,
        filter_row: Tensor | None = None,
        *,
        edges: kernels.Edges | None = None,
    ) -> Tensor:
        x = self.in2filter(h)  # [n_atoms, num_filters]
        m = continuous_filter_conv(  # Σ_j x_j ⊙ W_ij
            x, filters, edge_src, edge_dst, h.shape[0], filter_row, edges=edges
        )
        return self.out2(shifted_softplus(self.out1(m)))


class SchNet(Potential, nn.Module):
    r"""SchNet potential: E = Σ_i (s_{Z_i} · MLP(h_i^T) + b_{Z_i}).

    h_i^0 = embedding(Z_i),   h^{t+1} = h^t + Interaction_t(h^t, e(r), f_cut(r)),
    e_k(r) = exp(−γ (r − μ_k)²) (Gaussian expansion), f_cut(r) = ½ (cos(π r / r_max) + 1)
    (cosine cutoff, so energy and forces go to zero at r_max),
    MLP = Dense(F → F/2), ssp, Dense(→ 1).

    The architecture of Schütt, Kindermans, Sauceda, Chmiela, Tkatchenko, Müller, "SchNet: A
    continuous-filter convolutional neural network for modeling quantum interactions",
    NeurIPS 2017, and "SchNet – A deep learning architecture for molecules and materials",
    J. Chem. Phys. 148, 241722 (2018), with the cosine cutoff and layer layout of SchNetPack 2.

    Returns the energy per structure only; forces and stress come from
    :func:`~euclidnn.models.predict`, which takes inference forces from
    :meth:`energy_and_forces` (the C kernel on CPU).

    Shapes: graph (n_atoms, n_edges, n_graphs) → [n_graphs] eV

    >>> from euclidnn.data import Graph
    >>> from ase.build import molecule
    >>> model = SchNet(SchNetConfig(species=(1, 6, 8), num_features=16))
    >>> model(Graph.from_ase(molecule("CH3CH2OH"), r_max=5.0)).shape
    torch.Size([1])
    """

    def __init__(self, config: SchNetConfig = SchNetConfig()) -> None:
        super().__init__()
        self.config = config
        num_filters = config.num_filters or config.num_features
        self.species_index = SpeciesIndex(config.species)
        self.embedding = nn.Embedding(len(config.species), config.num_features)
        self.interactions = nn.ModuleList(
            SchNetInteraction(config.num_features, num_filters, config.num_basis)
            for _ in range(config.num_interactions)
        )
        self.readout1 = _dense(config.num_features, max(config.num_features // 2, 1))
        self.readout2 = _dense(max(config.num_features // 2, 1), 1)
        self.scale_shift = PerSpeciesScaleShift(
            len(config.species), config.energy_scales, config.energy_shifts
        )

    def atomic_energies(self, graph: Graph) -> Tensor:
        """Energy E_i of every atom (eV), the per-species scale and shift included; the sum of
        a structure's E_i is its energy (:meth:`forward`).

        Shapes: graph (n_atoms, n_edges) → [n_atoms] eV
        """
        cfg = self.config
        # an edge and its reverse have the same length, hence the same filters: compute them
        # once per undirected pair (half the filter GEMMs), each edge reading its pair's row
        pair_edge, edge_pair = graph.edge_pairs()
        edge_len = graph.edge_vectors().norm(dim=-1)  # [n_edges] Å
        pair_len = edge_len.index_select(0, pair_edge)  # [n_pairs] Å
        pair_radial = gaussian_basis(pair_len, cfg.r_max, cfg.num_basis, gamma=cfg.gamma)
        pair_cutoff = cosine_cutoff(pair_len, cfg.r_max)  # [n_pairs]
        species = self.species_index.of_graph(graph)  # [n_atoms]
        h = self.embedding(species).to(pair_len.dtype)  # [n_atoms, F]
        src, dst, edges = graph.edge_src, graph.edge_dst, pair_edges(graph)
        for interaction in self.interactions:
            pair_filter = interaction.filter(pair_radial, pair_cutoff)  # [n_pairs, F]
            h = h + interaction(h, pair_filter, src, dst, edge_pair, edges=edges)
        atom_energy = self.readout2(shifted_softplus(self.readout1(h))).squeeze(-1)  # [n_atoms]
        return self.scale_shift(atom_energy, species)

    def forward(self, graph: Graph) -> Tensor:
        return scatter_sum(self.atomic_energies(graph), graph.batch, dim_size=graph.num_graphs)

    @property
    def cutoff(self) -> float:
        return float(self.config.r_max)

    @property
    def num_hops(self) -> int:
        return self.config.num_interactions

    @property
    def species(self) -> tuple[int, ...]:
        return self.config.species

    def species_embeddings(self) -> Tensor:
        return self.embedding.weight

    def energy_and_forces(self, graph: Graph) -> tuple[Tensor, Tensor]:
        """Energy per structure and forces F = −∂E/∂R, in one C call where it can run.

        The kernel (:func:`euclidnn.kernels.schnet_energy_and_forces`) is :meth:`forward` with
        its chain rule written out, no autograd graph; it runs on CPU in float32/float64 when
        it computes this class's own function (:meth:`kernel_is_exact`), and autograd
        (:meth:`Potential.energy_and_forces`, the reference it is tested against) runs
        everywhere else.

        Shapes: graph (n_atoms, n_edges, n_graphs) → ([n_graphs] eV, [n_atoms, 3] eV/Å)
        """
        if not self.kernel_is_exact():
            return Potential.energy_and_forces(self, graph)
        cfg, positions = self.config, graph.positions
        rows = _rows(graph)
        row_offset = (  # S·cell of each row, as Graph.edge_vectors
            None
            if rows.shift is None
            else (rows.shift.unsqueeze(-1) * graph.cell.index_select(0, rows.graph)).sum(-2)
        )
        mu, gamma = gaussian_centres(
            cfg.r_max, cfg.num_basis, 0.0, cfg.gamma, positions.dtype, positions.device
        )
        with torch.no_grad():
            return kernels.schnet_energy_and_forces(
                _kernel_weights(self, positions.dtype), positions, row_offset, pair_edges(graph),
                graph.batch, graph.num_graphs, self.species_index.of_graph(graph), mu, gamma,
                cfg.r_max, reference=lambda: Potential.energy_and_forces(self, graph),
            )  # fmt: skip

    def kernel_weights(self) -> kernels.SchNetWeights:
        """The weights in the order of the C kernel (``euclidnn::schnet_energy_forces`` takes
        them flattened: the seven top tensors, then nine per interaction)."""
        return _kernel_weights(self, self.embedding.weight.dtype)

    def kernel_is_exact(self) -> bool:
        """Whether the kernel computes the function of ``self(graph)``.

        It reads the weights of the layers below directly, so it is exact only for this class's
        own :meth:`forward` over its own layers: not for a subclass that overrides ``forward``,
        a layer replaced by another class, or forward hooks on any of them (or global ones).
        """
        if type(self).forward is not SchNet.forward:
            return False
        if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
            return False
        if self._forward_hooks or self._forward_pre_hooks or not _plain(self, _LAYERS):
            return False
        blocks = self._modules["interactions"]._modules.values()
        return all(
            type(it) is SchNetInteraction
            and not (it._forward_hooks or it._forward_pre_hooks)
            and _plain(it, _BLOCK_LAYERS)
            for it in blocks
        )


# the layers the kernel reads, by name (checked through the modules' own dicts: an nn.Module
# attribute lookup costs about a microsecond, and this runs at every MD step)
_LAYERS = {
    "species_index": SpeciesIndex,
    "embedding": nn.Embedding,
    "interactions": nn.ModuleList,
    "readout1": nn.Linear,
    "readout2": nn.Linear,
    "scale_shift": PerSpeciesScaleShift,
}
_BLOCK_LAYERS = dict.fromkeys(("in2filter", "filter1", "filter2", "out1", "out2"), nn.Linear)


def _plain(module: nn.Module, layers: dict[str, type]) -> bool:
    """Whether ``module``'s children are exactly ``layers`` (name → class), none hooked."""
    children = module._modules
    return children.keys() == layers.keys() and all(
        type(m) is layers[name] and not (m._forward_hooks or m._forward_pre_hooks)
        for name, m in children.items()
    )


def _kernel_weights(model: SchNet, dtype: torch.dtype) -> kernels.SchNetWeights:
    """The model's weights in the kernel's order, read through the modules' own dicts."""
    layers = model._modules
    params = {name: layers[name]._parameters for name in ("embedding", "readout1", "readout2")}
    buffers = layers["scale_shift"]._buffers or layers["scale_shift"]._parameters
    blocks = []
    for block in layers["interactions"]._modules.values():
        p = {name: m._parameters for name, m in block._modules.items()}
        blocks.append(
            (p["filter1"]["weight"], p["filter1"]["bias"], p["filter2"]["weight"],
             p["filter2"]["bias"], p["in2filter"]["weight"], p["out1"]["weight"],
             p["out1"]["bias"], p["out2"]["weight"], p["out2"]["bias"])
        )  # fmt: skip
    return kernels.SchNetWeights(
        params["embedding"]["weight"],
        params["readout1"]["weight"],
        params["readout1"]["bias"],
        params["readout2"]["weight"],
        params["readout2"]["bias"],
        buffers["scales"].to(dtype),
        buffers["shifts"].to(dtype),
        blocks,
    )


class _Rows(NamedTuple):
    """The pairs' representative edges: endpoints, lattice shifts (None if all zero) and graph."""

    src: Tensor
    dst: Tensor
    shift: Tensor | None
    graph: Tensor


def _rows(graph: Graph) -> _Rows:
    def make(g: Graph) -> _Rows:
        pair_edge, _ = g.edge_pairs()
        src, dst = g.edge_src.index_select(0, pair_edge), g.edge_dst.index_select(0, pair_edge)
        shift = g.edge_shift.index_select(0, pair_edge)
        return _Rows(src, dst, shift if bool(shift.any()) else None, g.batch.index_select(0, src))

    return graph.derived("schnet pair rows", make)
