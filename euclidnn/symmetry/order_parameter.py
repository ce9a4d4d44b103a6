r"""Learn the symmetry-breaking order parameter a data set is missing (Smidt, Geiger & Miller,
Phys. Rev. Research 3, L012002 (2021)).

An equivariant model cannot map an input of symmetry G to an output of lower symmetry (see
:func:`~euclidnn.symmetry.loss_floor`). Give every atom extra input features o_s(i) of chosen
irreps (rows s of a learnable table, shared by the atoms that read the same row) and fit them
by gradient descent together with the model:

    loss = mean (f(x, o) − y)² + λ Σ_terms ‖o_term‖      (‖·‖ over all rows s)

The group-lasso penalty (one norm per irreps term) switches off the irreps the data does not
need, so what survives is the order parameter: its irreps, its values, and the subgroup of G
that leaves it invariant (:func:`~euclidnn.symmetry.stabilizer`). Constraints restrict the
search to intermediate symmetries: ``sites`` ties atoms to shared rows, and ``mask`` fixes
components at zero.

The model is one equivariant point convolution (messages from neighbour j to centre i):

    f_i = Σ_j TP(x_j, Y(r̂_ij); w(|r_ij|)),    x_j = one-hot(species_j) ⊕ o_s(j)

with every path to the output irreps and per-edge weights w from a radial network.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from euclidnn.data.graph import Graph
from euclidnn.data.structure import Structure
from euclidnn.nn.cutoff import polynomial_cutoff
from euclidnn.nn.radial import bessel_basis
from euclidnn.nn.scatter import scatter_sum
from euclidnn.o3.irreps import Irreps
from euclidnn.o3.spherical_harmonics import spherical_harmonics
from euclidnn.o3.tensor_product import TensorProduct, fully_connected_paths
from euclidnn.symmetry.breaking import norms_per_irrep

__all__ = ["BreakingModel", "OrderParameterConfig", "OrderParameterResult", "learn_order_parameter"]


@dataclass(frozen=True)
class OrderParameterConfig:
    """How to search for the order parameter.

    Attributes:
        irreps: candidate irreps of the order parameter per row (default l ≤ 2, both parities).
        r_max: Å, neighbours that exchange messages (default 3.0).
        lmax_sh: largest l of the edge spherical harmonics (default 3).
        num_basis: Bessel functions of the radial network (default 8).
        radial_width: hidden width of the radial network (default 16).
        sparsity: λ of the group-lasso penalty on the order parameter (default 1e-3).
        steps: Adam steps (default 1500).
        learning_rate: Adam's step size (default 1e-2), decayed to 1 % by the end (cosine).
        init_scale: standard deviation of the initial order parameter (default 0.1).
        seed: for the initial weights and order parameter (drawn from a
            :class:`torch.Generator` of their own; torch's global random state is untouched).
        num_threads: torch's intra-op threads during the fit, restored afterwards (default 1:
            the tensors are tiny, and on a busy machine 2 threads ran 27× slower than 1);
            ``None`` leaves torch's setting alone.
    """

    irreps: str = "0e + 0o + 1e + 1o + 2e + 2o"
    r_max: float = 3.0
    lmax_sh: int = 3
    num_basis: int = 8
    radial_width: int = 16
    sparsity: float = 1e-3
    steps: int = 1500
    learning_rate: float = 1e-2
    init_scale: float = 0.1
    seed: int = 0
    num_threads: int | None = 1


class BreakingModel(nn.Module):
    r"""One equivariant point convolution of (species ⊕ order parameter) to ``irreps_out``.

    f_i = Σ_j TP(x_j, Y(r̂_ij); w(|r_ij|)), with w = MLP(bessel(|r_ij|)) · cutoff(|r_ij|).

    Args:
        species: atomic numbers the model knows.
        irreps_order: irreps of the order parameter per atom.
        irreps_out: irreps of the output per atom.
        config: radial and angular resolution (:class:`OrderParameterConfig`).
        generator: where the initial weights are drawn from (default: torch's global one, as
            for any module); :func:`learn_order_parameter` passes one seeded with ``config.seed``.

    Shapes: graph (n_atoms), order: [n_atoms, irreps_order.dim] → [n_atoms, irreps_out.dim]
    """

    def __init__(
        self,
        species,
        irreps_order,
        irreps_out,
        config: OrderParameterConfig,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("species", torch.as_tensor(sorted(species), dtype=torch.int64))
        self.irreps_order = Irreps(irreps_order)
        self.irreps_in = Irreps(f"{len(self.species)}x0e") + self.irreps_order
        self.irreps_sh = Irreps.spherical_harmonics(config.lmax_sh)
        self.irreps_out = Irreps(irreps_out)
        self.tensor_product = TensorProduct(
            self.irreps_in,
            self.irreps_sh,
            fully_connected_paths(self.irreps_in, self.irreps_sh, self.irreps_out),
        )
        # skip_init: no draw from the global generator; reset_parameters draws from `generator`
        self.radial = nn.Sequential(
            nn.utils.skip_init(nn.Linear, config.num_basis, config.radial_width),
            nn.SiLU(),
            nn.utils.skip_init(nn.Linear, config.radial_width, self.tensor_product.weight_numel),
        )
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default initialisation of the radial network's linear layers (weights
        Kaiming-uniform with a = √5, biases uniform in ±1/√fan_in), drawn from ``generator``."""
        for linear in (self.radial[0], self.radial[2]):
            nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(linear.in_features)
            nn.init.uniform_(linear.bias, -bound, bound, generator=generator)

    def forward(self, graph: Graph, order: Tensor) -> Tensor:
        edge_vec = graph.edge_vectors()
        edge_len = edge_vec.norm(dim=-1)
        edge_sh = spherical_harmonics(self.irreps_sh, edge_vec, normalize=True)
        edge_radial = bessel_basis(edge_len, self.config.r_max, self.config.num_basis)
        edge_radial = edge_radial * polynomial_cutoff(edge_len, self.config.r_max)[:, None]
        one_hot = (graph.numbers[:, None] == self.species[None, :]).to(order.dtype)
        x = torch.cat([one_hot, order], dim=-1)
        weight = self.radial(edge_radial)
        messages = self.tensor_product(x[graph.edge_src], edge_sh, weight)
        return scatter_sum(messages, graph.edge_dst, dim_size=len(graph.numbers))


@dataclass(frozen=True, eq=False)
class OrderParameterResult:
    """What came out of :func:`learn_order_parameter`.

    Attributes:
        order_parameter: the learned rows o_s. Shapes: [n_rows, irreps.dim]
        irreps: their irreps.
        sites: the row each atom reads (−1: none). Shapes: [n_atoms]
        norms: ``(irreps term, norm over all rows)``: which irreps came out.
        prediction: the model's output on the input with the order parameter. Shapes: [n_atoms, dim]
        loss: final mean squared error (without the penalty).
        history: mean squared error every 10 steps.
        model: the trained :class:`BreakingModel`.
    """

    order_parameter: Tensor
    irreps: Irreps
    sites: np.ndarray
    norms: tuple[tuple[str, float], ...]
    prediction: Tensor
    loss: float
    history: tuple[float, ...]
    model: BreakingModel

    def per_atom(self) -> Tensor:
        """The order parameter each atom reads (zeros where ``sites`` is −1). Shapes: [n_atoms, dim]"""
        padded = torch.cat(
            [self.order_parameter, self.order_parameter.new_zeros(1, self.irreps.dim)]
        )
        return padded[torch.as_tensor(self.sites)]


def _penalty(order: Tensor, irreps: Irreps) -> Tensor:
    # one norm per irreps term over all rows: sparse in the irreps, not in the sites (a
    # per-site norm would also pick, among order parameters the model cannot tell apart,
    # ones that vanish on half the sites)
    return sum(order[:, s].norm() for s in irreps.slices())


def learn_order_parameter(
    structure: Structure,
    target: Tensor,
    irreps_out: Irreps | str = "1o",
    config: OrderParameterConfig = OrderParameterConfig(),
    sites=None,
    mask=None,
) -> OrderParameterResult:
    r"""Fit an order parameter and a :class:`BreakingModel` so that f(structure, o) ≈ target.

    Args:
        structure: the symmetric input (molecule or crystal).
        target: per-atom targets, e.g. displacements to the lower-symmetry structure (Å).
        irreps_out: irreps of the target per atom (default ``"1o"``).
        config: :class:`OrderParameterConfig`.
        sites: the row of the order parameter each atom reads, −1 for none (default: one row
            shared by all atoms, a global order parameter). Atoms with the same row are tied.
        mask: which components may be nonzero, [n_rows, irreps.dim] bool (default all); fixed
            components stay 0 (a constraint that keeps an intermediate symmetry).

    Shapes: target: [n_atoms, irreps_out.dim]

    >>> from ase import Atoms
    >>> square = Structure.from_ase(Atoms("C4", [[1, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]]))
    >>> target = torch.tensor(square.positions * [0.2, -0.2, 0.0])  # to a 1.2 × 0.8 rectangle
    >>> result = learn_order_parameter(square, target, config=OrderParameterConfig(steps=200))
    >>> result.loss < 1e-4, max(result.norms, key=lambda t: t[1])[0]
    (True, '1x2e')
    """
    with _intra_op_threads(config.num_threads):
        return _fit(structure, target, irreps_out, config, sites, mask)


@contextmanager
def _intra_op_threads(num_threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``num_threads`` inside the block (``None``: left
    alone) and restored when it ends, also when it raises."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def _fit(structure, target, irreps_out, config, sites, mask) -> OrderParameterResult:
    irreps = Irreps(config.irreps)
    n_atoms = structure.num_atoms
    sites = (
        np.zeros(n_atoms, dtype=np.int64) if sites is None else np.asarray(sites, dtype=np.int64)
    )
    if sites.shape != (n_atoms,) or sites.max() < 0:
        raise ValueError(
            f"sites: expected [{n_atoms}] row indices with at least one ≥ 0, got {sites.tolist()}"
        )
    n_rows = int(sites.max()) + 1
    mask = (
        torch.ones(n_rows, irreps.dim, dtype=torch.bool) if mask is None else torch.as_tensor(mask)
    )
    if mask.shape != (n_rows, irreps.dim):
        raise ValueError(f"mask: expected shape [{n_rows}, {irreps.dim}], got {list(mask.shape)}")
    target = torch.as_tensor(target, dtype=torch.float64)
    if target.shape != (n_atoms, Irreps(irreps_out).dim):
        raise ValueError(
            f"target: expected shape [{n_atoms}, {Irreps(irreps_out).dim}], got {list(target.shape)}"
        )

    generator = torch.Generator().manual_seed(config.seed)
    species = np.unique(structure.numbers)
    model = BreakingModel(species, irreps, irreps_out, config, generator=generator).double()
    order = nn.Parameter(
        config.init_scale
        * torch.randn(n_rows, irreps.dim, generator=generator, dtype=torch.float64)
    )
    graph = Graph.from_structure(structure, config.r_max, dtype=torch.float64)
    index = torch.as_tensor(np.where(sites < 0, n_rows, sites))
    optimizer = torch.optim.Adam([order, *model.parameters()], lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, config.steps, eta_min=config.learning_rate / 100
    )

    def per_atom(o: Tensor) -> Tensor:
        return torch.cat([o * mask, o.new_zeros(1, irreps.dim)])[index]

    history = []
    for step in range(config.steps):
        optimizer.zero_grad()
        mse = (model(graph, per_atom(order)) - target).pow(2).mean()
        (mse + config.sparsity * _penalty(order * mask, irreps)).backward()
        optimizer.step()
        schedule.step()
        if step % 10 == 0:
            history.append(float(mse.detach()))
    with torch.no_grad():
        learned = (order * mask).detach()
        prediction = model(graph, per_atom(learned))
        loss = float((prediction - target).pow(2).mean())
    return OrderParameterResult(
        learned,
        irreps,
        sites,
        norms_per_irrep(learned, irreps),
        prediction,
        loss,
        tuple(history),
        model,
    )
