"""Allegro: a strictly local equivariant potential whose features live on edges."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor, nn

from euclidnn import kernels
from euclidnn.data.graph import Graph
from euclidnn.models import allegro_forces
from euclidnn.models.allegro_forces import (
    CentreSlots,
    _run_or_index,
    centre_slots,
    layer_product,
)
from euclidnn.models.common import PerSpeciesScaleShift, SpeciesIndex, check_species
from euclidnn.models.edge_derivatives import harmonic_degrees
from euclidnn.models.interface import Potential
from euclidnn.nn.cutoff import polynomial_cutoff
from euclidnn.nn.mlp import ScalarMLP
from euclidnn.nn.radial import bessel_basis
from euclidnn.nn.scatter import scatter_sum
from euclidnn.o3.irreps import Irrep, Irreps
from euclidnn.o3.linear import Linear
from euclidnn.o3.spherical_harmonics import spherical_harmonics
from euclidnn.o3.tensor_product import Paths, TensorProduct, instruction_paths

__all__ = ["AllegroConfig", "Allegro", "AllegroLayer", "channelwise_paths", "weighted_harmonics"]

_SCALAR = Irrep("0e")


@dataclass(frozen=True)
class AllegroConfig:
    """Hyperparameters of :class:`Allegro`.

    The Allegro paper (Musaelian et al. 2023) and its package train small molecules and
    materials with 1–3 layers, lmax 1–3, 8–64 tensor channels, latent MLPs from 64 wide (the
    package's minimal example) up to 1024 (its large models), and cutoffs of 4–7 Å: a larger
    cutoff costs less accuracy than in a message-passing model, since one cutoff sphere is
    all an atom ever sees. The defaults here are sized for a CPU (the package's minimal
    example with lmax 1): 2 layers, lmax = 1, 16 tensor channels, latent width 64, r_max = 5 Å.

    Attributes:
        species: atomic numbers the model knows (default ``(1, 6, 7, 8)``).
        r_max: cutoff radius in Å (default 5.0). It is also the receptive field: an atom's
            energy depends on the atoms within r_max of it and on nothing else; 5–6 Å for
            molecules and bulk, more for long-ranged interactions.
        lmax: largest order of the spherical harmonics and of the tensor features, 0–3
            (default 1; 2 is more accurate and about 3–5× slower per layer; 0 gives an
            invariant model of three-body angles through the scalar track only).
        parity: tensor features of both parities, e.g. 0e+0o+1o+1e for lmax = 1 (default True,
            E(3)-equivariant, as the paper's ``o3_full``); False keeps only the (−1)^l parities
            of the spherical harmonics: still O(3)-invariant energies, about a third of the
            paths at lmax = 2, faster.
        num_layers: number of Allegro layers (tensor products) (default 2; 1–3 work well;
            each adds a body order). The last one makes scalars only.
        num_tensor_features: channels n of the tensor track, the multiplicity of every irrep
            of V_ij and of the environment (default 16; the paper's "env_embed_multiplicity",
            8–64). Cost grows linearly with it.
        latent_dim: width of the scalar latents x_ij and of the hidden layers of the two-body
            and latent MLPs (default 64; 64–128 on a CPU, the paper up to 1024).
        two_body_mlp_depth: hidden layers of the two-body MLP that makes x_ij from the
            species of i and j and the radial basis (default 2).
        latent_mlp_depth: hidden layers of each layer's latent MLP (default 1).
        edge_energy_width: hidden width of the one-hidden-layer MLP that turns the last
            latents into the edge energy E_ij (default 32).
        num_basis: number of Bessel functions in the radial basis (default 8).
        polynomial_p: exponent p of the polynomial cutoff envelope u(r) (default 6, ≥ 2).
        latent_resnet: x_ij ← (x_ij + u(r_ij) MLP(…)) / √2 (default True, as the paper);
            False replaces x_ij by u(r_ij) MLP(…) in each layer.
        avg_num_neighbors: the environment sums and the edge-energy sums are divided by
            sqrt(avg_num_neighbors) (default ``None`` = no division); set it to the mean number
            of neighbours within r_max of the training set (``euclidnn train`` does).
        energy_scales: per-species scale of the atomic energy in eV (default ``None`` = 1),
            e.g. the force RMS of the data.
        energy_shifts: per-species energy shift in eV (default ``None`` = 0), e.g. isolated-atom
            or least-squares per-species energies.

    >>> str(AllegroConfig(lmax=2, parity=False, num_tensor_features=4).irreps_tensor)
    '4x0e+4x1o+4x2e'
    """

    species: tuple[int, ...] = (1, 6, 7, 8)
    r_max: float = 5.0
    lmax: int = 1
    parity: bool = True
    num_layers: int = 2
    num_tensor_features: int = 16
    latent_dim: int = 64
    two_body_mlp_depth: int = 2
    latent_mlp_depth: int = 1
    edge_energy_width: int = 32
    num_basis: int = 8
    polynomial_p: int = 6
    latent_resnet: bool = True
    avg_num_neighbors: float | None = None
    energy_scales: tuple[float, ...] | float | None = None
    energy_shifts: tuple[float, ...] | float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "species", check_species(self.species, "AllegroConfig"))
        for name in ("energy_scales", "energy_shifts"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (int, float)):
                object.__setattr__(self, name, tuple(float(v) for v in value))
        if not 0 <= self.lmax <= 3:
            raise ValueError(f"AllegroConfig.lmax must be 0..3, got {self.lmax}")
        if not self.r_max > 0:
            raise ValueError(f"AllegroConfig.r_max must be positive (Å), got {self.r_max}")
        for name in (
            "num_layers",
            "num_tensor_features",
            "latent_dim",
            "edge_energy_width",
            "num_basis",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"AllegroConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("two_body_mlp_depth", "latent_mlp_depth"):
            if getattr(self, name) < 0:
                raise ValueError(f"AllegroConfig.{name} must be ≥ 0, got {getattr(self, name)}")
        if self.polynomial_p < 2:
            raise ValueError(
                f"AllegroConfig.polynomial_p must be ≥ 2 (smooth forces), got {self.polynomial_p}"
            )
        if self.avg_num_neighbors is not None and not self.avg_num_neighbors > 0:
            raise ValueError(
                f"AllegroConfig.avg_num_neighbors must be positive, got {self.avg_num_neighbors}"
            )

    @property
    def irreps_tensor(self) -> Irreps:
        """Tensor features: ``num_tensor_features`` copies of every l ≤ lmax (both parities if
        ``parity``)."""
        return Irreps(
            [
                (self.num_tensor_features, Irrep(l, p))
                for l in range(self.lmax + 1)  # noqa: E741
                for p in ((1, -1) if self.parity else ((-1) ** l,))
            ]
        )


def channelwise_paths(
    irreps_in1: Irreps | str, irreps_in2: Irreps | str, irreps_target: Irreps | str
) -> Paths:
    """Channelwise ("uuu") paths without weights: channel n of ``mul x ir1`` with channel n of
    ``mul x ir2`` → ``mul x ir_out`` for every ir_out ∈ ir1 ⊗ ir2 in the target.

    out_p[n, k] = α_p Σ_{ij} x1[n, i] x2[n, j] C_{ijk}, one output term per path (ordered by
    i_in1, i_in2, ir_out); a following :class:`~euclidnn.o3.Linear` mixes paths and channels.

    >>> p = channelwise_paths("2x0e + 2x1o", "2x0e + 2x1o", "0e + 1o")
    >>> str(p.irreps_out), {q.mode for q in p.paths}
    ('2x0e+2x1o+2x1o+2x0e', {'uuu'})
    """
    irreps_in1, irreps_in2 = Irreps(irreps_in1), Irreps(irreps_in2)
    targets = {ir for _, ir in Irreps(irreps_target)}
    out, ins = [], []
    for i1, (mul, ir1) in enumerate(irreps_in1):
        for i2, (_, ir2) in enumerate(irreps_in2):
            for ir_out in ir1 * ir2:
                if ir_out in targets:
                    ins.append((i1, i2, len(out), "uuu", False))
                    out.append((mul, ir_out))
    return instruction_paths(irreps_in1, irreps_in2, Irreps(out), ins)


def weighted_harmonics(weights: Tensor, edge_sh: Tensor) -> Tensor:
    """Spherical harmonics with one weight per channel n and degree l: w_{e,n,l} Y_{e,l,m}.

    The result has the irreps ``num_channels x (0e + 1o + 2e + …)`` (e3nn layout: each term
    a [num_channels, 2l + 1] block, flattened).

    Shapes: weights: [n_edges, num_channels, lmax + 1], edge_sh: [n_edges, (lmax + 1)²]
        → [n_edges, num_channels · (lmax + 1)²]

    >>> weighted_harmonics(torch.tensor([[[2.0, 10.0]]]), torch.tensor([[1.0, 1.0, 2.0, 3.0]]))
    tensor([[ 2., 10., 20., 30.]])
    """
    n_edges, num_channels, num_l = weights.shape
    blocks = [
        (weights[:, :, l, None] * edge_sh[:, None, l * l : (l + 1) ** 2]).reshape(
            n_edges, num_channels * (2 * l + 1)
        )
        for l in range(num_l)  # noqa: E741
    ]
    return torch.cat(blocks, dim=-1)


def _channel_major(irreps: Irreps) -> Tensor:
    """Column permutation from e3nn's layout to the channel-major one of irreps whose terms
    share one multiplicity: ``x[:, perm]`` is [·, mul, d] flattened, channel n holding the
    components of every term in order (d = irreps.dim / mul).

    >>> _channel_major(Irreps("2x0e + 2x1o")).tolist()
    [0, 2, 3, 4, 1, 5, 6, 7]
    """
    if not irreps:
        return torch.zeros(0, dtype=torch.int64)
    offsets = [sum(m * ir.dim for m, ir in irreps[:t]) for t in range(len(irreps))]
    cols = [
        offset + n * ir.dim + c
        for n in range(irreps[0].mul)
        for offset, (_, ir) in zip(offsets, irreps)
        for c in range(ir.dim)
    ]
    return torch.tensor(cols, dtype=torch.int64)


class _Folded(NamedTuple):
    """The constant of :meth:`AllegroLayer.fast` in one dtype (float64 master on the CPU): the
    map from the products of component pairs to the layer's outputs, as one matrix
    [mul · n_pairs, mul · d_out + mul · n_scalars] of channel-major columns — the new features
    (the channelwise tensor product followed by the Linear) and then the scalars (channel,
    path) that feed the latent MLP, the environment's normalisation folded in.

    Each entry is one Linear weight times a constant, or a constant: entry =
    w[index] · scale with w the Linear's weights followed by a 1 (``index`` ``None``: the
    matrix is ``scale``, a layer without Linear).
    """

    scale: Tensor
    index: Tensor | None


class _LayerWeights(NamedTuple):
    """The matrices of :meth:`AllegroLayer.fast`, made from the layer's parameters once per
    call (:meth:`AllegroLayer.fast_weights`).

    env: the environment MLP's matrices, its degree weights expanded to every component;
    latent: the latent MLP's matrices, the first one's rows in the fast path's scalar order;
    product: the map of :class:`_Folded` with the Linear's weights put in;
    atom_product: the same map as [mul, d_env, d_in, K] for the product per centre
        (:func:`~euclidnn.models.allegro_forces.atom_maps`; ``None`` where the layer has none).
    """

    env: list[Tensor]
    latent: list[Tensor]
    product: Tensor
    atom_product: Tensor | None


class AllegroLayer(nn.Module):
    r"""One Allegro layer: the centre's environment, its product with the edge's tensor
    features, and the update of the edge's scalar latents.

    w_ik = W_env x_ik                                     (one weight per channel n and degree l)
    Γ_i = (1/√N̄) Σ_{k ∈ N(i)} w_ik ⊙ Y(r̂_ik)             (scatter over edge_dst, gathered back)
    T_ij = V_ij ⊗ Γ_i                                     (channelwise paths, no weights)
    x_ij' = (x_ij + u(r_ij) MLP([x_ij, scalars(T_ij)])) / √2
    V_ij' = Linear(T_ij)

    The scalars are the 0e outputs of T; the Linear mixes paths and channels of each irrep.
    Every term of edge ij reads only edges ending at i, so the layer is strictly local.
    ``irreps_out`` empty (the last layer): only the scalars are made, and the returned
    tensor features are [n_edges, 0].

    Shapes: latents: [n_edges, latent_dim], features: [n_edges, irreps_in.dim],
        edge_sh: [n_edges, (lmax + 1)²], edge_cutoff, edge_dst: [n_edges]
        → ([n_edges, latent_dim], [n_edges, irreps_out.dim])

    >>> layer = AllegroLayer("4x0e + 4x1o", "4x0e + 4x1o", lmax=1, latent_dim=8)
    >>> x, v, dst = torch.randn(5, 8), torch.randn(5, 16), torch.tensor([0, 0, 1, 1, 2])
    >>> [t.shape for t in layer(x, v, torch.randn(5, 4), torch.ones(5), dst, num_atoms=3)]
    [torch.Size([5, 8]), torch.Size([5, 16])]
    """

    def __init__(
        self,
        irreps_in: Irreps | str,
        irreps_out: Irreps | str,
        *,
        lmax: int,
        latent_dim: int,
        latent_mlp_depth: int = 1,
        avg_num_neighbors: float | None = None,
        resnet: bool = True,
    ) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps_in)
        self.num_channels = mul = self.irreps_in[0].mul
        if any(m != mul for m, _ in self.irreps_in):
            raise ValueError(f"AllegroLayer: every term needs the same multiplicity: {irreps_in}")
        self.lmax, self.resnet = lmax, resnet
        self.env_norm = 1.0 / math.sqrt(avg_num_neighbors or 1.0)
        self.irreps_env = Irreps([(mul, ir) for _, ir in Irreps.spherical_harmonics(lmax)])
        self.env_embed = ScalarMLP([latent_dim, mul * (lmax + 1)])
        wanted = [ir for _, ir in Irreps(irreps_out)]
        target = Irreps([(1, ir) for ir in [_SCALAR, *wanted]])  # scalars feed the latents
        paths = channelwise_paths(self.irreps_in, self.irreps_env, target)
        self.tensor_product = TensorProduct(self.irreps_in, self.irreps_env, paths)
        made = {ir for _, ir in paths.irreps_out}
        self.irreps_out = Irreps([(mul, ir) for ir in wanted if ir in made])
        self.linear = Linear(paths.irreps_out, self.irreps_out) if self.irreps_out else None
        self.scalar_slices = [
            s for s, (_, ir) in zip(paths.irreps_out.slices(), paths.irreps_out) if ir == _SCALAR
        ]
        num_scalars = sum(s.stop - s.start for s in self.scalar_slices)
        self.latent_mlp = ScalarMLP(
            [latent_dim + num_scalars, *[latent_dim] * latent_mlp_depth, latent_dim]
        )
        self._fold(paths.irreps_out, latent_dim)

    def _fold(self, irreps_paths: Irreps, latent_dim: int) -> None:
        """The constants of :meth:`fast`, read off the reference modules in float64.

        The tensor product is evaluated on basis vectors of channel 0 (its paths act on each
        channel alike), the Linear on the identity with its weights set to ones and to
        1, 2, 3, …: so the fast path computes the reference's own maps, whatever their
        normalisations.
        """
        mul = self.num_channels
        d_in, d_env = self.irreps_in.dim // mul, self.irreps_env.dim // mul
        perm_in, perm_env = _channel_major(self.irreps_in), _channel_major(self.irreps_env)
        perm_paths = _channel_major(irreps_paths)
        k_paths = irreps_paths.dim // mul
        is_scalar = torch.tensor([ir == _SCALAR for _, ir in irreps_paths for _ in range(ir.dim)])
        order = torch.cat([is_scalar.nonzero()[:, 0], (~is_scalar).nonzero()[:, 0]])
        self.num_scalar_columns = int(is_scalar.sum())
        if not self.irreps_out:
            order = order[: self.num_scalar_columns]
        x1 = torch.zeros(d_in, d_env, self.irreps_in.dim, dtype=torch.float64)
        x2 = torch.zeros(d_in, d_env, self.irreps_env.dim, dtype=torch.float64)
        for i, cols in enumerate(perm_in.view(mul, d_in).t()):  # component i of every channel
            x1[i, :, cols] = 1.0
        for j, cols in enumerate(perm_env.view(mul, d_env).t()):
            x2[:, j, cols] = 1.0
        tp = copy.deepcopy(self.tensor_product).double()
        with torch.no_grad():
            out = tp(x1.reshape(d_in * d_env, -1), x2.reshape(d_in * d_env, -1))
        out = out.index_select(1, perm_paths).view(d_in * d_env, mul, k_paths)
        if not torch.allclose(out, out[:, :1], atol=1e-12):  # every channel alike
            raise AssertionError("AllegroLayer: the paths are not channelwise")
        product = out[:, 0, order] * self.env_norm  # [d_in · d_env, K]
        # only the component pairs (i, j) with a coefficient are multiplied (the last layer's
        # scalars need a few of them); a contiguous run of components is read as a view
        pairs = (product != 0).any(1).nonzero()[:, 0]
        self.dense_pairs = pairs.shape[0] == d_in * d_env
        self.per_atom = self.dense_pairs and d_env > 1  # may multiply per centre (atom_maps)
        self.in_dim = d_in
        self.pair_in = _run_or_index(pairs // d_env)
        self.pair_env = _run_or_index(pairs % d_env)
        product = product[pairs]  # [n_pairs, K]
        self.env_dim, self.num_pairs = d_env, pairs.shape[0]
        n_s = self.num_scalar_columns
        blocks = torch.block_diag(*[product] * mul)  # [(n, pair), (n, k)]
        scalars = torch.block_diag(*[product[:, :n_s]] * mul)  # [(n, pair), (n, scalar path)]
        scale, index = scalars, None
        if self.linear is not None:
            # the Linear's input columns of channel-major products (n, order[k]), its outputs
            # channel-major; evaluated with its weights set to ones and to 1, 2, 3, …
            rows = perm_paths.view(mul, k_paths)[:, order].reshape(-1)
            cols = _channel_major(self.irreps_out)
            n_weights = self.linear.weight.shape[0]
            eye = torch.eye(irreps_paths.dim, dtype=torch.float64)
            linear = copy.deepcopy(self.linear).double()  # (no new weights: the RNG untouched)
            maps = []
            for w in (
                torch.ones(n_weights),
                torch.arange(1.0, n_weights + 1),
                torch.arange(1.0, n_weights + 1).sin(),  # (no RNG drawn)
            ):
                with torch.no_grad():
                    linear.weight.copy_(w)
                    maps.append(blocks @ linear(eye)[rows][:, cols])
            ones = maps[0]
            index = torch.where(ones != 0, (maps[1] / ones).round() - 1, n_weights).to(torch.int64)
            trial = torch.cat([w, torch.ones(1, dtype=torch.float64)])[index] * ones
            if self.linear.bias is not None or not torch.allclose(trial, maps[2], atol=1e-12):
                raise AssertionError("AllegroLayer: an entry of the folded map is not one weight")
            scale = torch.cat([ones, scalars], dim=1)
            index = torch.cat([index, torch.full(scalars.shape, n_weights)], dim=1)
        self.out_dim = self.irreps_out.dim // mul if self.irreps_out else 0
        self.atom_columns = scale.shape[1]  # K: the new features' and the scalars' columns
        # the latent MLP reads the scalars as [latents, (path, channel)]; fast() has them
        # (channel, path): its first weight's rows permuted to match
        scalar_rows = torch.arange(n_s * mul).view(n_s, mul).t().reshape(-1)
        latent_rows = torch.cat([torch.arange(latent_dim), latent_dim + scalar_rows])
        env_cols = torch.arange(mul * (self.lmax + 1)).view(mul, -1)[:, harmonic_degrees(self.lmax)]
        self.register_buffer("latent_rows", latent_rows, persistent=False)
        self.register_buffer("env_cols", env_cols.reshape(-1), persistent=False)
        self._constants = {(torch.float64, torch.device("cpu")): _Folded(scale, index)}

    def forward(
        self,
        latents: Tensor,
        features: Tensor,
        edge_sh: Tensor,
        edge_cutoff: Tensor,
        edge_dst: Tensor,
        num_atoms: int,
    ) -> tuple[Tensor, Tensor]:
        weights = self.env_embed(latents).unflatten(-1, (self.num_channels, self.lmax + 1))
        env = scatter_sum(weighted_harmonics(weights, edge_sh), edge_dst, num_atoms)  # [n_atoms, ·]
        env = env * self.env_norm  # Γ_i, normalised on atoms (fewer rows than edges)
        products = self.tensor_product(features, env.index_select(0, edge_dst))
        scalars = torch.cat([products[:, s] for s in self.scalar_slices], dim=-1)
        update = edge_cutoff[:, None] * self.latent_mlp(torch.cat([latents, scalars], dim=-1))
        latents = (latents + update) * (1.0 / math.sqrt(2.0)) if self.resnet else update
        if self.linear is None:
            return latents, products.new_zeros(products.shape[0], 0)
        return latents, self.linear(products)

    def constants(self, dtype: torch.dtype, device: torch.device) -> _Folded:
        """The folded constants of :meth:`fast` in ``dtype`` on ``device`` (cached)."""
        key = (dtype, device)
        if key not in self._constants:
            master = self._constants[torch.float64, torch.device("cpu")]
            index = None if master.index is None else master.index.to(device)
            self._constants[key] = _Folded(master.scale.to(device, dtype), index)
        return self._constants[key]

    def fast_weights(self, dtype: torch.dtype) -> _LayerWeights:
        """The matrices :meth:`fast` multiplies by, made from the parameters (differentiable
        in them)."""
        folded = self.constants(dtype, self.env_cols.device)
        product = folded.scale
        if folded.index is not None:
            weight = self.linear.weight.to(dtype)
            entries = torch.cat([weight, weight.new_ones(1)])  # (index_select: 3x `[index]`)
            product = entries.index_select(0, folded.index.reshape(-1)).view_as(product) * product
        atom_product = None
        if self.per_atom:  # rows (n, i, j) → [n, j, i, K]
            shape = (self.num_channels, self.in_dim, self.env_dim, product.shape[1])
            atom_product = product.view(shape).transpose(1, 2).contiguous()
        return _LayerWeights(
            self.env_embed.matrices(output_cols=self.env_cols),
            self.latent_mlp.matrices(input_rows=self.latent_rows),
            product,
            atom_product,
        )

    def fast(
        self,
        latents: Tensor,
        features: Tensor,
        edge_sh: Tensor,
        edge_cutoff: Tensor,
        edge_dst: Tensor,
        num_atoms: int,
        weights: _LayerWeights | None = None,
        slots: CentreSlots | None = None,
    ) -> tuple[Tensor, Tensor]:
        """:meth:`forward` with the features channel-major, in fewer and larger operations:
        the environment's degree weights expanded by the MLP's last weight, the products of
        the component pairs with a coefficient, then one matrix product that makes the new
        features (tensor product and Linear folded, :class:`_Folded`) and the scalars at once.
        With ``slots`` (the edges by centre) and where it is cheaper
        (:func:`~euclidnn.models.allegro_forces.per_atom_product`), the folded map is
        contracted with each centre's environment first and an edge's outputs are its features
        times its centre's map: one batched matrix product per layer, no pair stored.
        The same numbers up to rounding (tested against :meth:`forward`).

        ``edge_cutoff`` here is u(r) / √2 with ``resnet`` (the residual's factor folded in),
        u(r) without; ``weights``: :meth:`fast_weights` (made here when ``None``).

        Shapes: latents: [n_edges, latent_dim], features: [n_edges, mul, d_in] (channel-major,
            :func:`_channel_major`), edge_sh: [n_edges, (lmax + 1)²], edge_cutoff, edge_dst:
            [n_edges] → ([n_edges, latent_dim], [n_edges, mul, d_out])
        """
        n_edges, mul = latents.shape[0], self.num_channels
        if weights is None:
            weights = self.fast_weights(latents.dtype)
        env_weights = self.env_embed.run(latents, weights.env).view(n_edges, mul, self.env_dim)
        weighted = (env_weights * edge_sh[:, None, :]).view(n_edges, mul * self.env_dim)  # w Y
        env = weighted.new_zeros(num_atoms, weighted.shape[1]).index_add_(0, edge_dst, weighted)
        out, _ = layer_product(self, weights, features, env, edge_dst, num_atoms, slots)
        width = mul * self.out_dim
        hidden = torch.cat([latents, out[:, width:]], dim=-1)  # the scalars (channel, path)
        update = self.latent_mlp.run(hidden, weights.latent)
        if self.resnet:
            latents = torch.addcmul(latents * (1.0 / math.sqrt(2.0)), edge_cutoff[:, None], update)
        else:
            latents = edge_cutoff[:, None] * update
        return latents, out[:, :width].view(n_edges, mul, self.out_dim)


class Allegro(Potential, nn.Module):
    r"""Allegro potential (Musaelian, Batzner, Johansson, Sun, Owen, Kornbluth, Kozinsky,
    "Learning local equivariant representations for large-scale atomistic dynamics",
    Nat. Commun. 14, 579 (2023)).

    Features live on the edges ij (i = ``edge_dst`` the centre, j = ``edge_src`` the neighbour):
    a scalar track of latents x_ij and a tensor track V_ij of irreps features.

    x⁰_ij = u(r_ij) MLP_2b([onehot(Z_i), onehot(Z_j), B(r_ij) u(r_ij)]),  V⁰_ij = (W₀ x⁰_ij) ⊙ Y(r̂_ij)
    (x^{t+1}, V^{t+1}) = AllegroLayer_t(x^t, V^t)     (environment of i only, see AllegroLayer)
    E_i = s_{Z_i} (1/√N̄) Σ_{j ∈ N(i)} MLP_E(x^T_ij) + b_{Z_i},   E = Σ_i E_i

    with B the Bessel basis, u the polynomial cutoff, Y the spherical harmonics up to lmax
    ("component" normalization). Every latent carries the factor u(r_ij), so energies and
    forces go to zero smoothly at r_max, and every quantity of edge ij is computed from edges
    ending at i: E_i depends only on atoms within r_max of i (``num_hops`` = 1, the receptive
    field is one cutoff sphere). Forces/stress from :func:`~euclidnn.models.predict`.

    Two paths compute the same numbers (up to rounding; tested against each other): the
    reference (:meth:`AllegroLayer.forward`, e3nn's layout, ``EUCLIDNN_NATIVE=0``) and the fast
    path that runs otherwise (:meth:`AllegroLayer.fast`: channel-major features, each layer's
    tensor product and Linear as matrix products with constants read off the reference
    modules); for inference :meth:`energy_and_forces` differentiates the network and the
    radial functions by hand (one autograd node each) instead of through autograd's graph.

    Shapes: graph (n_atoms, n_edges, n_graphs) → [n_graphs] eV

    >>> from euclidnn.data import Graph
    >>> from ase.build import molecule
    >>> model = Allegro(AllegroConfig(species=(1, 6, 8), num_tensor_features=4, latent_dim=8))
    >>> model(Graph.from_ase(molecule("CH3CH2OH"), r_max=5.0)).shape
    torch.Size([1])
    """

    def __init__(self, config: AllegroConfig = AllegroConfig()) -> None:
        super().__init__()
        self.config = cfg = config
        num_species, mul = len(cfg.species), cfg.num_tensor_features
        self.irreps_sh = Irreps.spherical_harmonics(cfg.lmax)
        self.species_index = SpeciesIndex(cfg.species)
        hidden = [cfg.latent_dim] * cfg.two_body_mlp_depth
        self.two_body = ScalarMLP([2 * num_species + cfg.num_basis, *hidden, cfg.latent_dim])
        self.initial_embed = ScalarMLP([cfg.latent_dim, mul * (cfg.lmax + 1)])
        irreps = Irreps([(mul, ir) for _, ir in self.irreps_sh])
        layers = []
        for t in range(cfg.num_layers):
            layer = AllegroLayer(
                irreps,
                cfg.irreps_tensor if t < cfg.num_layers - 1 else Irreps(""),
                lmax=cfg.lmax,
                latent_dim=cfg.latent_dim,
                latent_mlp_depth=cfg.latent_mlp_depth,
                avg_num_neighbors=cfg.avg_num_neighbors,
                resnet=cfg.latent_resnet,
            )
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        self.edge_energy = ScalarMLP([cfg.latent_dim, cfg.edge_energy_width, 1])
        self.sum_norm = 1.0 / math.sqrt(cfg.avg_num_neighbors or 1.0)
        self.scale_shift = PerSpeciesScaleShift(num_species, cfg.energy_scales, cfg.energy_shifts)
        # every MLP the default SiLU one: what allegro_forces differentiates by hand
        self.silu_only = all(
            getattr(m.act, "__wrapped__", m.act) is nn.functional.silu
            for m in self.modules()
            if isinstance(m, ScalarMLP)
        )

    @property
    def cutoff(self) -> float:
        return float(self.config.r_max)

    @property
    def num_hops(self) -> int:
        return 1  # strictly local: everything E_i reads lies within r_max of atom i

    @property
    def species(self) -> tuple[int, ...]:
        return self.config.species

    def atomic_energies(self, graph: Graph) -> Tensor:
        """Energy E_i of every atom (eV), the per-species scale and shift included; the sum of
        a structure's E_i is its energy.

        Shapes: graph (n_atoms, n_edges) → [n_atoms] eV
        """
        if kernels.native_enabled():
            return self._atomic_energies_fast(graph)
        cfg = self.config
        edge_vec = graph.edge_vectors()  # [n_edges, 3] Å
        edge_len = edge_vec.norm(dim=-1)  # [n_edges]
        edge_sh = spherical_harmonics(self.irreps_sh, edge_vec, normalize=True)  # [n_edges, (l+1)²]
        edge_cutoff = polynomial_cutoff(edge_len, cfg.r_max, cfg.polynomial_p)  # [n_edges]
        edge_radial = bessel_basis(edge_len, cfg.r_max, cfg.num_basis) * edge_cutoff[:, None]
        species = self.species_index.of_graph(graph)  # [n_atoms]
        one_hot = nn.functional.one_hot(species, len(cfg.species)).to(edge_vec.dtype)
        src, dst, num_atoms = graph.edge_src, graph.edge_dst, graph.numbers.shape[0]
        pair = torch.cat([one_hot[dst], one_hot[src], edge_radial], dim=-1)
        latents = edge_cutoff[:, None] * self.two_body(pair)  # [n_edges, latent_dim]
        weights = self.initial_embed(latents).unflatten(-1, (cfg.num_tensor_features, cfg.lmax + 1))
        features = weighted_harmonics(weights, edge_sh)  # [n_edges, mul · (lmax+1)²]
        for layer in self.layers:
            latents, features = layer(latents, features, edge_sh, edge_cutoff, dst, num_atoms)
        edge_energy = self.edge_energy(latents).squeeze(-1)  # [n_edges] eV (unscaled)
        atom_energy = scatter_sum(edge_energy, dst, num_atoms) * self.sum_norm  # [n_atoms]
        return self.scale_shift(atom_energy, species)

    def _atomic_energies_fast(self, graph: Graph, frozen: bool = False) -> Tensor:
        """:meth:`atomic_energies` through :meth:`AllegroLayer.fast` (channel-major features),
        the species one-hots of the edges kept with the graph; the reference runs with
        ``EUCLIDNN_NATIVE=0``. ``frozen``: the weight matrices are made outside autograd
        (no derivative with respect to the weights)."""
        cfg = self.config
        edge_vec = graph.edge_vectors()  # [n_edges, 3] Å
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            two_body, initial, layer_weights, edge_energy_weights = self._weights(edge_vec.dtype)
        species, pair_species = self._species(graph, edge_vec.dtype)
        dst, num_atoms = graph.edge_dst, graph.numbers.shape[0]
        edge_len = edge_vec.norm(dim=-1)  # [n_edges]
        edge_sh = spherical_harmonics(self.irreps_sh, edge_vec, normalize=True)  # [n_edges, (l+1)²]
        edge_cutoff = polynomial_cutoff(edge_len, cfg.r_max, cfg.polynomial_p)  # [n_edges]
        edge_radial = bessel_basis(edge_len, cfg.r_max, cfg.num_basis) * edge_cutoff[:, None]
        layer_cutoff = edge_cutoff * (1.0 / math.sqrt(2.0)) if cfg.latent_resnet else edge_cutoff
        pair = torch.cat([pair_species, edge_radial], dim=-1)
        latents = edge_cutoff[:, None] * self.two_body.run(pair, two_body)  # [n_edges, latent]
        weights = self.initial_embed.run(latents, initial)
        n_edges, mul, d_sh = latents.shape[0], cfg.num_tensor_features, self.irreps_sh.dim
        features = weights.view(n_edges, mul, d_sh) * edge_sh[:, None, :]
        slots = self._slots(graph)
        for layer, w in zip(self.layers, layer_weights):
            latents, features = layer.fast(
                latents, features, edge_sh, layer_cutoff, dst, num_atoms, weights=w, slots=slots
            )
        edge_energy = self.edge_energy.run(latents, edge_energy_weights).squeeze(-1)  # [n_edges]
        atom_energy = scatter_sum(edge_energy, dst, num_atoms) * self.sum_norm  # [n_atoms]
        return self.scale_shift(atom_energy, species)

    def _weights(self, dtype: torch.dtype) -> tuple:
        """The fast path's matrices: (two-body MLP, initial embedding, per layer, edge energy)."""
        two_body = self.two_body.matrices()
        initial = self.initial_embed.matrices(output_cols=self.layers[0].env_cols)
        layer_weights = [layer.fast_weights(dtype) for layer in self.layers]
        return two_body, initial, layer_weights, self.edge_energy.matrices()

    def _species(self, graph: Graph, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The species row of each atom and the one-hots of each edge's two atoms, both kept
        with the graph.

        Shapes: → ([n_atoms], [n_edges, 2 · num_species])
        """
        species_list = self.config.species
        species = self.species_index.of_graph(graph)  # [n_atoms]
        pair_species = graph.derived(
            f"allegro pair one-hot {species_list} {dtype}",
            lambda g: _pair_one_hot(species, g.edge_src, g.edge_dst, len(species_list), dtype),
        )
        return species, pair_species

    @staticmethod
    def _slots(graph: Graph) -> CentreSlots | None:
        """The edges by centre, kept with the graph; ``None`` while a trace records (the
        slots' width would be a constant of it: the layers then multiply per edge)."""
        if torch.jit.is_tracing():
            return None
        num_atoms = graph.numbers.shape[0]
        return graph.derived("edges by centre", lambda g: centre_slots(g.edge_dst, num_atoms))

    def frozen_inputs(self, graph: Graph) -> allegro_forces.Frozen:
        """What the hand-written derivative (:mod:`~euclidnn.models.allegro_forces`) reads
        besides the graph: the weight matrices (constant, in the positions' dtype) and the
        species rows, made outside inference mode (also under a caller's) and without autograd,
        so that what is kept with the graph can serve autograd later."""
        dtype = graph.positions.dtype
        with torch.inference_mode(False), torch.no_grad():
            return allegro_forces.Frozen(
                self._weights(dtype), *self._species(graph, dtype), self._slots(graph)
            )

    def energy_and_forces(self, graph: Graph) -> tuple[Tensor, Tensor]:
        """Energy per structure and forces F = −∂E/∂R for inference: with the default SiLU
        networks, the chain rule written out and no autograd graph, in inference mode
        (:func:`~euclidnn.models.allegro_forces.energy_and_forces`); else autograd through the
        fast path with its weight matrices made outside autograd. The reference is
        :meth:`~euclidnn.models.Potential.energy_and_forces` (``EUCLIDNN_NATIVE=0``).

        Shapes: graph (n_atoms, n_graphs) → ([n_graphs] eV, [n_atoms, 3] eV/Å)
        """
        if not kernels.native_enabled():
            return Potential.energy_and_forces(self, graph)
        if self.silu_only:
            frozen = self.frozen_inputs(graph)
            with torch.inference_mode():
                energy, forces = allegro_forces.energy_and_forces(self, frozen, graph)
            return energy.clone(), forces.clone()  # tensors autograd may read
        positions = graph.positions.detach().requires_grad_(True)
        with torch.enable_grad():
            graph = replace(graph, positions=positions)
            atom_energy = self._atomic_energies_fast(graph, frozen=True)
            energy = scatter_sum(atom_energy, graph.batch, dim_size=graph.num_graphs)
            grad = None
            if energy.requires_grad:
                (grad,) = torch.autograd.grad(energy.sum(), positions, allow_unused=True)
        forces = torch.zeros_like(positions) if grad is None else -grad
        return energy.detach(), forces

    def forward(self, graph: Graph) -> Tensor:
        return scatter_sum(self.atomic_energies(graph), graph.batch, dim_size=graph.num_graphs)


def _pair_one_hot(
    species: Tensor, edge_src: Tensor, edge_dst: Tensor, num_species: int, dtype: torch.dtype
) -> Tensor:
    """[onehot(Z_i), onehot(Z_j)] of every edge (i = ``edge_dst``, j = ``edge_src``).

    Shapes: species: [n_atoms], edge_src, edge_dst: [n_edges] → [n_edges, 2 · num_species]
    """
    one_hot = nn.functional.one_hot(species, num_species).to(dtype)
    return torch.cat([one_hot[edge_dst], one_hot[edge_src]], dim=-1)
