"""SchNet: continuous-filter convolutions on interatomic distances (an invariant potential)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from euclidnn.data.graph import Graph
from euclidnn.models import _schnet_native
from euclidnn.models.common import (
    PerSpeciesScaleShift,
    SpeciesIndex,
    check_species,
    edge_pairs,
    graph_cached,
    shifted_softplus,
)
from euclidnn.nn.conv import continuous_filter_conv, continuous_filter_conv_backward
from euclidnn.nn.cutoff import cosine_cutoff
from euclidnn.nn.radial import gaussian_basis
from euclidnn.nn.scatter import scatter_sum
from euclidnn.o3 import _native

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


# SchNet computes filters per undirected pair from this many edges on. 0 = always: the pairs of
# a graph are cached (edge_pairs), and even uncached they break even at ethanol's 72 edges
PAIR_MIN_EDGES = 0

# SchNet.energy_and_forces runs as one C call (models/_schnet_kernel.c) where it can; False:
# always the PyTorch code below it (tests compare the two)
FUSED = True


class SchNetInteraction(nn.Module):
    r"""One SchNet interaction block (Schütt et al. 2017, Fig. 2), returning the update v.

    x = W_in h,   W_ij = f_cut(r_ij) · Dense(ssp(Dense(e(r_ij)))),
    m_i = Σ_j x_j ⊙ W_ij  (continuous-filter convolution, j = edge_src → i = edge_dst),
    v_i = Dense(ssp(Dense(m_i)))

    The filter W depends on the distance only, so it is computed by :meth:`filter` (once per
    undirected pair in :class:`SchNet`) and passed to :meth:`forward` with the row of each edge.

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
    ) -> Tensor:
        x = self.in2filter(h)  # [n_atoms, num_filters]
        m = continuous_filter_conv(
            x, filters, edge_src, edge_dst, h.shape[0], filter_row
        )  # Σ_j x_j ⊙ W_ij
        return self.out2(shifted_softplus(self.out1(m)))


class SchNet(nn.Module):
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
    :func:`~euclidnn.models.predict`.

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

    def forward(self, graph: Graph) -> Tensor:
        cfg = self.config
        # an edge and its reverse have the same length, hence the same filters: compute them
        # once per undirected pair (half the filter GEMMs), each edge reading its pair's row
        edge_len = graph.edge_vectors().norm(dim=-1)  # [n_edges] Å
        if edge_len.shape[0] >= PAIR_MIN_EDGES:
            pair_edge, edge_pair = edge_pairs(graph.edge_src, graph.edge_dst, graph.edge_shift)
            pair_len = edge_len.index_select(0, pair_edge)  # [n_pairs] Å
        else:
            pair_len, edge_pair = edge_len, None
        # [n_pairs, K]
        pair_radial = gaussian_basis(pair_len, cfg.r_max, cfg.num_basis, gamma=cfg.gamma)
        pair_cutoff = cosine_cutoff(pair_len, cfg.r_max)  # [n_pairs]
        species = self.species_index(graph.numbers)  # [n_atoms]
        h = self.embedding(species).to(pair_len.dtype)  # [n_atoms, F]
        for interaction in self.interactions:
            pair_filter = interaction.filter(pair_radial, pair_cutoff)  # [n_pairs, F]
            h = h + interaction(h, pair_filter, graph.edge_src, graph.edge_dst, edge_pair)
        atom_energy = self.readout2(shifted_softplus(self.readout1(h))).squeeze(-1)  # [n_atoms]
        atom_energy = self.scale_shift(atom_energy, species)
        return scatter_sum(atom_energy, graph.batch, dim_size=graph.num_graphs)

    @torch.no_grad()
    def energy_and_forces(self, graph: Graph) -> tuple[Tensor, Tensor]:
        """Energy per structure and forces F = −∂E/∂R with hand-written derivatives.

        The same function as :meth:`forward`; the chain rule is written out layer by layer, so
        no autograd graph is built. On CPU the whole call runs as one C function
        (``models/_schnet_kernel.c``, built on first use; the PyTorch code below is the fallback
        and the reference): 2.7× faster than the PyTorch code on ethanol, 1.3–1.8× on 192 atoms
        (``bench/schnet_kernel.py``; most of a small call is per-operation overhead).
        :func:`~euclidnn.models.predict` uses it for inference. Tested against autograd.

        Shapes: graph (n_atoms, n_edges, n_graphs) → ([n_graphs] eV, [n_atoms, 3] eV/Å)
        """
        cfg = self.config
        src, dst, shift = graph.edge_src, graph.edge_dst, graph.edge_shift
        row = None  # filter row of each edge: its pair (as in forward), or itself
        if src.shape[0] >= PAIR_MIN_EDGES:
            pair_edge, row = edge_pairs(src, dst, shift)
        else:
            pair_edge = torch.arange(src.shape[0], device=src.device)

        def rows():  # endpoints, shifts (None if all zero) and cell of the rows' edges
            src_p, dst_p = src.index_select(0, pair_edge), dst.index_select(0, pair_edge)
            periodic = bool(shift.any())
            return (
                src_p,
                dst_p,
                shift.index_select(0, pair_edge) if periodic else None,
                graph.batch.index_select(0, src_p),
            )

        src_p, dst_p, shift_p, graph_p = graph_cached(
            "schnet rows", (src, dst, shift, graph.batch, pair_edge), rows
        )
        offset = (  # S·cell of each row, as Graph.edge_vectors
            None
            if shift_p is None
            else (shift_p.unsqueeze(-1) * graph.cell.index_select(0, graph_p)).sum(-2)
        )
        table = self.species_index.table
        species = graph_cached(
            "species rows", (graph.numbers, table), lambda: self.species_index(graph.numbers)
        )
        positions = graph.positions
        mu = torch.linspace(
            0.0, cfg.r_max, cfg.num_basis, dtype=positions.dtype, device=positions.device
        )
        gamma = (
            cfg.gamma
            if cfg.gamma is not None
            else 0.5 / (cfg.r_max / max(cfg.num_basis - 1, 1)) ** 2
        )
        if FUSED and row is not None and positions.device.type == "cpu":  # one C call
            n = positions.shape[0]
            edges = _native.edges_for(src, dst, n, n, row, pair_edge.shape[0])
            out = _schnet_native.energy_and_forces(
                self, positions, (src_p, dst_p, offset), edges, graph.batch, species,
                graph.num_graphs, mu, gamma,
            )  # fmt: skip
            if out is not None:
                return out

        vec = positions.index_select(0, src_p) - positions.index_select(0, dst_p)
        if offset is not None:
            vec = vec + offset
        r = vec.norm(dim=-1)  # [n_rows] Å
        # Gaussians e, cosine cutoff fc and their r-derivatives, sharing intermediates (the same
        # formulas as gaussian_basis and cosine_cutoff, so the same numbers as forward)
        radial = _schnet_native.radial(r, mu, gamma, cfg.r_max)
        if radial is not None:  # one C call instead of ~20 small tensor operations
            e, de_dr, fc, dfc_dr = radial
        else:
            diff = r[:, None] - mu  # [n_rows, K]
            exponent = -gamma * diff**2
            exponent.masked_fill_(exponent < math.log(torch.finfo(r.dtype).tiny), -math.inf)
            e = exponent.exp_()
            de_dr = diff.mul_(-2.0 * gamma).mul_(e)
            theta = r * (math.pi / cfg.r_max)
            inside = (r < cfg.r_max).to(r.dtype)
            fc = (0.5 * (torch.cos(theta) + 1.0)).mul_(inside)  # [n_rows]
            dfc_dr = torch.sin(theta).mul_(inside).mul_(-0.5 * math.pi / cfg.r_max)

        h = self.embedding.weight.index_select(0, species).to(r.dtype)  # [n_atoms, F]
        n = h.shape[0]

        # the first filter layers of all T interactions in one matmul: a = [n_rows, T·F]
        # (layers are applied with F.linear: a module call costs more than a small matmul)
        linear = nn.functional.linear
        its = self.interactions
        width = its[0].filter2.in_features
        w1 = torch.cat([it.filter1.weight for it in its])  # [T·F, K]
        a = torch.addmm(torch.cat([it.filter1.bias for it in its]), e, w1.t())
        s_a = shifted_softplus(a).split(width, dim=1)  # T views [n_rows, F]
        fc_col = fc[:, None]
        f = [linear(s_t, it.filter2.weight, it.filter2.bias) for it, s_t in zip(its, s_a)]
        w = [f_t * fc_col for f_t in f]  # [n_rows, F] each
        saved = []
        for t, it in enumerate(its):
            x = linear(h, it.in2filter.weight)
            m = continuous_filter_conv(x, w[t], src, dst, n, row)
            o = linear(m, it.out1.weight, it.out1.bias)
            h = h + linear(shifted_softplus(o), it.out2.weight, it.out2.bias)
            saved.append((x, o))
        p = linear(h, self.readout1.weight, self.readout1.bias)
        atom_energy = linear(shifted_softplus(p), self.readout2.weight, self.readout2.bias)
        scale = self.scale_shift.scales.to(r.dtype).index_select(0, species)  # [n_atoms]
        shift = self.scale_shift.shifts.to(r.dtype).index_select(0, species)
        atom_energy = torch.addcmul(
            shift, atom_energy.squeeze(-1), scale
        )  # as PerSpeciesScaleShift
        energy = scatter_sum(atom_energy, graph.batch, dim_size=graph.num_graphs)

        # reverse pass: g_z = ∂E/∂z for each intermediate z (nn.Linear: y = z Wᵀ + b → g_z = g_y W;
        # ssp' = sigmoid); torch.mm, not @, for a little less overhead per call
        g_h = torch.mm(
            scale[:, None] * self.readout2.weight * torch.sigmoid(p), self.readout1.weight
        )
        sig_a = torch.sigmoid(a).split(width, dim=1)
        g_a = a.new_empty(len(its), a.shape[0], width)  # [T, n_rows, F]
        g_fc = torch.zeros_like(r)
        for t in reversed(range(len(its))):
            it, (x, o) = its[t], saved[t]
            g_m = torch.mm(torch.mm(g_h, it.out2.weight) * torch.sigmoid(o), it.out1.weight)
            g_x, g_w = continuous_filter_conv_backward(x, w[t], g_m, src, dst, row)
            g_h = torch.addmm(g_h, g_x, it.in2filter.weight)  # residual + through x = W_in h
            g_fc += torch.linalg.vecdot(g_w, f[t])  # Σ_c g_w f
            torch.mul(torch.mm(g_w * fc_col, it.filter2.weight), sig_a[t], out=g_a[t])
        g_e = torch.bmm(g_a, w1.view(len(its), width, -1)).sum(0)  # Σ_t g_a,t W1,t  [n_rows, K]
        g_r = torch.addcmul(torch.linalg.vecdot(g_e, de_dr), g_fc, dfc_dr)  # [n_rows]
        g_vec = (g_r / r)[:, None] * vec  # ∂E/∂(r_src − r_dst + shift)
        # F = −∂E/∂R: the source atom of an edge gets −g_vec, the destination +g_vec
        forces = torch.zeros_like(graph.positions).index_add_(0, dst_p, g_vec)
        return energy, forces.index_add_(0, src_p, g_vec, alpha=-1)
