"""NequIP: an E(3)-equivariant interatomic potential with features of order l ≤ lmax."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from euclidnn import kernels
from euclidnn.data.graph import Graph
from euclidnn.models import nequip_forces
from euclidnn.models.common import PerSpeciesScaleShift, SpeciesIndex, check_species
from euclidnn.models.interface import Potential
from euclidnn.nn.conv import EquivariantConv
from euclidnn.nn.cutoff import polynomial_cutoff
from euclidnn.nn.gate import Gate
from euclidnn.nn.radial import bessel_basis
from euclidnn.nn.scatter import scatter_sum
from euclidnn.o3.irreps import Irrep, Irreps
from euclidnn.o3.linear import Linear
from euclidnn.o3.spherical_harmonics import spherical_harmonics

__all__ = ["NequIPConfig", "NequIP", "NequIPLayer", "SpeciesLinear"]


@dataclass(frozen=True)
class NequIPConfig:
    """Hyperparameters of :class:`NequIP`.

    The NequIP paper's MD17 model (Batzner et al. 2022) has 5 interaction layers, 64 features
    per irrep, lmax = 3 (l = 1 already beats invariant models; l = 2–3 is best), 8 Bessel
    functions, polynomial cutoff p = 6, r_max = 4 Å, a radial MLP of 2 hidden layers × 64 and
    parity on. The defaults here are that model scaled to a CPU: 4 layers, 32 features, lmax = 1
    (the nequip package's defaults), r_max = 5 Å.

    Attributes:
        species: atomic numbers the model knows (default ``(1, 6, 7, 8)``).
        r_max: cutoff radius in Å (default 5.0; the paper: 4.0 for MD17, 5–6 for bulk).
        lmax: largest order of the spherical harmonics and of the features, 0–3 (default 1;
            2 is more accurate and about 2–3× slower; 0 gives an invariant model).
        num_features: multiplicity of every hidden irrep (default 32; the paper uses 64).
        num_layers: number of interaction layers (default 4; 3–5 work best). The last layer
            outputs scalars only.
        num_basis: number of Bessel functions (default 8, as in the paper).
        polynomial_p: exponent p of the polynomial cutoff envelope (default 6).
        parity: features of both parities, e.g. 0e+0o+1o+1e for lmax = 1 (default True,
            E(3)-equivariant, as the paper); False keeps only (−1)^l parities (SE(3)·parity
            of the spherical harmonics: still O(3)-invariant energies, fewer paths, faster).
        radial_mlp_depth: hidden layers of the radial network R(r) (default 2, the paper).
        radial_mlp_width: hidden width of R(r) (default 64, the paper).
        avg_num_neighbors: the convolution sum is divided by sqrt(avg_num_neighbors) (default
            ``None`` = no division); set it to the mean number of neighbours within r_max of
            the training set for well-scaled activations.
        energy_scales: per-species scale of the atomic energy in eV (default ``None`` = 1),
            e.g. the force RMS of the data.
        energy_shifts: per-species energy shift in eV (default ``None`` = 0), e.g. isolated-atom
            or least-squares per-species energies.
    """

    species: tuple[int, ...] = (1, 6, 7, 8)
    r_max: float = 5.0
    lmax: int = 1
    num_features: int = 32
    num_layers: int = 4
    num_basis: int = 8
    polynomial_p: int = 6
    parity: bool = True
    radial_mlp_depth: int = 2
    radial_mlp_width: int = 64
    avg_num_neighbors: float | None = None
    energy_scales: tuple[float, ...] | float | None = None
    energy_shifts: tuple[float, ...] | float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "species", check_species(self.species, "NequIPConfig"))
        for name in ("energy_scales", "energy_shifts"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (int, float)):
                object.__setattr__(self, name, tuple(float(v) for v in value))
        if not 0 <= self.lmax <= 3:
            raise ValueError(f"NequIPConfig.lmax must be 0..3, got {self.lmax}")
        if self.r_max <= 0:
            raise ValueError(f"NequIPConfig.r_max must be positive (Å), got {self.r_max}")
        if self.num_layers < 1 or self.num_features < 1 or self.num_basis < 1:
            raise ValueError(
                f"NequIPConfig: num_layers ({self.num_layers}), num_features ({self.num_features}) "
                f"and num_basis ({self.num_basis}) must be ≥ 1"
            )
        if self.avg_num_neighbors is not None and self.avg_num_neighbors <= 0:
            raise ValueError(
                f"NequIPConfig.avg_num_neighbors must be positive, got {self.avg_num_neighbors}"
            )

    @property
    def irreps_hidden(self) -> Irreps:
        """Hidden features: ``num_features`` copies of every l ≤ lmax (both parities if ``parity``)."""
        terms = [
            (self.num_features, Irrep(l, p))
            for l in range(self.lmax + 1)  # noqa: E741
            for p in ((1, -1) if self.parity else ((-1) ** l,))
        ]
        return Irreps(terms)


def _kernel_edges(graph: Graph) -> kernels.Edges:
    """The graph's edges for the convolution kernel (made once per graph)."""
    n = graph.numbers.shape[0]
    return kernels.Edges(graph.edge_src, graph.edge_dst, n, n)


def _path_exists(irreps_in1: Irreps, irreps_in2: Irreps, ir_out: Irrep) -> bool:
    return any(ir_out in ir1 * ir2 for _, ir1 in irreps_in1 for _, ir2 in irreps_in2)


class SpeciesLinear(nn.Module):
    """Equivariant linear map with one weight matrix per species (NequIP's self-connection).

    out_i = Linear_{s_i}(x_i): the fully connected tensor product of x with a one-hot species
    vector, computed as one :class:`~euclidnn.o3.Linear` into ``num_species`` copies of the
    output followed by a gather.

    Shapes: x: [n_atoms, irreps_in.dim], species: [n_atoms] → [n_atoms, irreps_out.dim]
    """

    def __init__(self, irreps_in: Irreps, irreps_out: Irreps, num_species: int) -> None:
        super().__init__()
        self.irreps_in, self.irreps_out, self.num_species = (
            Irreps(irreps_in),
            Irreps(irreps_out),
            num_species,
        )
        self.linear = Linear(
            self.irreps_in, Irreps([(mul * num_species, ir) for mul, ir in self.irreps_out])
        )
        # columns[s, c]: the column of the linear's output holding output column c for species s
        columns, offset = [], 0
        for mul, ir in self.irreps_out:
            block = torch.arange(num_species * mul * ir.dim).view(num_species, mul * ir.dim)
            columns.append(block + offset)
            offset += num_species * mul * ir.dim
        self.register_buffer("columns", torch.cat(columns, dim=1), persistent=False)

    def forward(self, x: Tensor, species: Tensor) -> Tensor:
        if self.num_species == 1:
            return self.linear(x)
        y = self.linear(x)  # [n, Σ_terms S·mul·dim]
        return y.gather(1, self.columns[species])  # each atom's own species block


class NequIPLayer(nn.Module):
    r"""One NequIP interaction layer: convolution, self-connection, gate.

    m_i = (1/√N̄) Σ_{j ∈ N(i)} R(r_ij) ⊙ (W₁ h_j ⊗ Y(r̂_ij))      ("uvu" tensor product)
    h_i' = Gate(W₂ m_i + SC_{Z_i}(h_i))

    The convolution W₂ m is an :class:`~euclidnn.nn.EquivariantConv` (W₁ then the "uvu" tensor
    product with radial weights, then W₂): R is an MLP of the Bessel × cutoff features giving
    one weight per tensor-product path and channel; W₁, W₂ are equivariant linear maps; SC is
    the species-dependent self-connection (absent in the first layer, so an isolated atom has
    exactly its shift as energy). ``edges`` (optional) are the same edges prepared once for
    the kernel (:class:`euclidnn.kernels.Edges`).

    Shapes: h: [n_atoms, irreps_in.dim], edge_sh: [n_edges, irreps_sh.dim],
    edge_radial: [n_edges, num_basis], edge_src, edge_dst: [n_edges], species: [n_atoms]
    → [n_atoms, irreps_out.dim]
    """

    def __init__(
        self,
        irreps_in: Irreps,
        irreps_sh: Irreps,
        irreps_target: Irreps,
        num_species: int,
        num_basis: int,
        radial_mlp_depth: int,
        radial_mlp_width: int,
        avg_num_neighbors: float | None,
        self_connection: bool,
    ) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps_in)
        scalars = Irreps(
            [
                (m, ir)
                for m, ir in irreps_target
                if ir.l == 0 and _path_exists(self.irreps_in, irreps_sh, ir)
            ]
        )
        gated = Irreps(
            [
                (m, ir)
                for m, ir in irreps_target
                if ir.l > 0 and _path_exists(self.irreps_in, irreps_sh, ir)
            ]
        )
        gate_ir = (
            Irrep("0e") if _path_exists(self.irreps_in, irreps_sh, Irrep("0e")) else Irrep("0o")
        )
        gates = Irreps([(m, gate_ir) for m, _ in gated])
        act = {1: nn.functional.silu, -1: torch.tanh}
        self.gate = Gate(
            scalars, [act[ir.p] for _, ir in scalars], gates, [act[ir.p] for _, ir in gates], gated
        )
        irreps_conv = self.gate.irreps_in
        self.conv = EquivariantConv(
            self.irreps_in,
            irreps_sh,
            irreps_conv,
            num_basis,
            radial_hidden=[radial_mlp_width] * radial_mlp_depth,
            avg_num_neighbors=avg_num_neighbors or 1.0,
        )
        self.self_connection = (
            SpeciesLinear(self.irreps_in, irreps_conv, num_species) if self_connection else None
        )
        self.irreps_out = self.gate.irreps_out

    def forward(
        self,
        h: Tensor,
        edge_sh: Tensor,
        edge_radial: Tensor,
        edge_src: Tensor,
        edge_dst: Tensor,
        species: Tensor,
        *,
        edges: kernels.Edges | None = None,
    ) -> Tensor:
        out = self.conv(h, edge_sh, edge_radial, edge_src, edge_dst, edges=edges)
        if self.self_connection is not None:
            out = out + self.self_connection(h, species)
        return self.gate(out)


class NequIP(Potential, nn.Module):
    r"""NequIP potential (Batzner et al., "E(3)-equivariant graph neural networks for
    data-efficient and accurate interatomic potentials", Nat. Commun. 13, 2453 (2022)).

    h⁰_i = embedding(Z_i) (scalars),  h^{t+1} = NequIPLayer_t(h^t, Y(r̂), B(r)·u(r)),
    E = Σ_i (s_{Z_i} · W h^T_i + b_{Z_i})

    with Y the spherical harmonics up to lmax ("component" normalization), B the Bessel basis
    and u the polynomial cutoff (energy and forces → 0 smoothly at r_max). The last layer
    outputs scalars only. Energy per structure; forces/stress from
    :func:`~euclidnn.models.predict`.

    Shapes: graph (n_atoms, n_edges, n_graphs) → [n_graphs] eV

    >>> from euclidnn.data import Graph
    >>> from ase.build import molecule
    >>> model = NequIP(NequIPConfig(species=(1, 6, 8), num_features=4, num_layers=2))
    >>> model(Graph.from_ase(molecule("CH3CH2OH"), r_max=5.0)).shape
    torch.Size([1])
    """

    def __init__(self, config: NequIPConfig = NequIPConfig()) -> None:
        super().__init__()
        self.config = cfg = config
        num_species = len(cfg.species)
        self.irreps_sh = Irreps.spherical_harmonics(cfg.lmax)
        self.species_index = SpeciesIndex(cfg.species)
        self.embedding = nn.Embedding(num_species, cfg.num_features)
        nn.init.normal_(self.embedding.weight)
        irreps = Irreps(f"{cfg.num_features}x0e")
        layers = []
        for t in range(cfg.num_layers):
            target = (
                cfg.irreps_hidden if t < cfg.num_layers - 1 else Irreps(f"{cfg.num_features}x0e")
            )
            layer = NequIPLayer(
                irreps,
                self.irreps_sh,
                target,
                num_species,
                cfg.num_basis,
                cfg.radial_mlp_depth,
                cfg.radial_mlp_width,
                cfg.avg_num_neighbors,
                self_connection=t > 0,
            )
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        self.irreps_features = (
            layers[-2].irreps_out if len(layers) > 1 else Irreps(f"{cfg.num_features}x0e")
        )
        self.readout = Linear(irreps, "0e")
        self.scale_shift = PerSpeciesScaleShift(num_species, cfg.energy_scales, cfg.energy_shifts)
        # layouts and index maps of the inference path (no weights: those are read per call)
        self.inference_plan = nequip_forces.InferencePlan(self)

    @property
    def cutoff(self) -> float:
        return float(self.config.r_max)

    @property
    def num_hops(self) -> int:
        return self.config.num_layers

    @property
    def species(self) -> tuple[int, ...]:
        return self.config.species

    def species_embeddings(self) -> Tensor:
        return self.embedding.weight

    def _edges(self, graph: Graph) -> tuple[Tensor, Tensor]:
        cfg = self.config
        edge_vec = graph.edge_vectors()  # [n_edges, 3] Å
        edge_len = edge_vec.norm(dim=-1)  # [n_edges]
        edge_sh = spherical_harmonics(
            self.irreps_sh, edge_vec, normalize=True
        )  # [n_edges, (lmax+1)²]
        edge_radial = (
            bessel_basis(edge_len, cfg.r_max, cfg.num_basis)
            * polynomial_cutoff(edge_len, cfg.r_max, cfg.polynomial_p)[:, None]
        )  # [n_edges, num_basis]
        return edge_sh, edge_radial

    def features(self, graph: Graph, num_layers: int | None = None) -> tuple[Tensor, Tensor]:
        """Atom features after the first ``num_layers`` layers (default all but the last, whose
        irreps are :attr:`irreps_features`), and the species row of each atom.

        Shapes: → ([n_atoms, irreps.dim], [n_atoms])
        """
        if num_layers is None:
            num_layers = max(len(self.layers) - 1, 0)
        edge_sh, edge_radial = self._edges(graph)
        species = self.species_index.of_graph(graph)
        h = self.embedding(species).to(edge_sh.dtype)
        src, dst = graph.edge_src, graph.edge_dst
        edges = graph.derived("kernel edges", _kernel_edges)
        for layer in self.layers[:num_layers]:
            h = layer(h, edge_sh, edge_radial, src, dst, species, edges=edges)
        return h, species

    def atomic_energies(self, graph: Graph) -> Tensor:
        """Energy E_i of every atom (eV), the per-species scale and shift included; the sum of
        a structure's E_i is its energy (:meth:`forward`).

        Shapes: graph (n_atoms, n_edges) → [n_atoms] eV
        """
        h, species = self.features(graph, num_layers=len(self.layers))
        return self.scale_shift(self.readout(h).squeeze(-1), species)  # [n_atoms] eV

    def forward(self, graph: Graph) -> Tensor:
        return scatter_sum(self.atomic_energies(graph), graph.batch, dim_size=graph.num_graphs)

    def energy_and_forces(self, graph: Graph) -> tuple[Tensor, Tensor]:
        """Energy per structure and forces F = −∂E/∂R for inference, with the chain rule written
        out and no autograd graph (:func:`~euclidnn.models.nequip_forces.energy_and_forces`:
        features per degree, a few operations per layer, the convolution kernel for every
        partial derivative).

        It runs where it computes this class's own function (:meth:`fast_path_applies`) on
        CPU float32/float64 tensors with the convolution kernel available; autograd
        (:meth:`Potential.energy_and_forces`, the reference it is tested against, and what
        ``EUCLIDNN_NATIVE=0`` selects) runs everywhere else.

        Shapes: graph (n_atoms, n_edges, n_graphs) → ([n_graphs] eV, [n_atoms, 3] eV/Å)
        """
        if not (self.fast_path_applies() and kernels.fused_conv_available(graph.positions)):
            return Potential.energy_and_forces(self, graph)
        with torch.inference_mode(False), torch.no_grad():  # (also under a caller's inference mode)
            top = nequip_forces.topology(self, graph)
        with torch.inference_mode():
            energy, forces = nequip_forces.energy_and_forces(self, self.inference_plan, graph, top)
        return energy.clone(), forces.clone()  # tensors autograd may read, as everywhere else

    def fast_path_applies(self) -> bool:
        """Whether the hand-written path computes ``self(graph)``: this class's own forward
        over the modules the plan was built from, none of them hooked (a subclass that
        overrides a step of the forward pass, a replaced layer or a hook gets autograd)."""
        cls = type(self)
        return (
            cls is NequIP
            or all(
                getattr(cls, name) is getattr(NequIP, name)
                for name in ("forward", "atomic_energies", "features", "_edges")
            )
        ) and self.inference_plan.applies(self)
