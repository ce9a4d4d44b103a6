"""Point convolutions: messages from neighbours summed onto the centre atoms — the equivariant
x_j ⊗ R(r_ij) Y(r̂_ij) and SchNet's continuous filter x_j ⊙ W(r_ij)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch  # noqa: F401 (used by the doctests, which run in this module's globals)
from torch import Tensor, nn

from euclidnn import kernels
from euclidnn.nn.mlp import ScalarMLP
from euclidnn.o3.irreps import Irreps
from euclidnn.o3.linear import Linear
from euclidnn.o3.tensor_product import TensorProduct, uvu_paths

__all__ = ["EquivariantConv", "continuous_filter_conv"]


def continuous_filter_conv(
    x: Tensor,
    weight: Tensor,
    edge_src: Tensor,
    edge_dst: Tensor,
    num_nodes: int,
    weight_row: Tensor | None = None,
    *,
    edges: kernels.Edges | None = None,
) -> Tensor:
    """Continuous-filter convolution (SchNet): out[i] = Σ_{e : edge_dst[e] = i} x[edge_src[e]] ⊙ W_e.

    W_e = ``weight[weight_row[e]]`` (or ``weight[e]``), so edges may share a filter row, e.g. an
    edge and its reverse. On CPU this runs the fused kernel :func:`euclidnn.kernels.filter_conv`
    (no [n_edges, F] gather, product or scatter is stored; derivatives of any order are exact);
    elsewhere the composition of ``index_select``, product and ``index_add``.

    Args:
        edges: the same edges prepared once for the kernel (:class:`euclidnn.kernels.Edges`,
            with ``weight_row`` as its ``row``); prepared here when ``None``.

    Shapes: x: [n_src, F], weight: [n_rows, F], edge_src, edge_dst (, weight_row): [n_edges]
        → [num_nodes, F]

    >>> x, w = torch.tensor([[1.0], [2.0]]), torch.tensor([[10.0], [100.0]])
    >>> continuous_filter_conv(x, w, torch.tensor([0, 1]), torch.tensor([1, 0]), 2).flatten()
    tensor([200.,  10.])
    """
    weight = weight.to(x.dtype)

    def reference() -> Tensor:
        w = weight if weight_row is None else weight.index_select(0, weight_row)
        messages = x.index_select(0, edge_src) * w
        return messages.new_zeros(num_nodes, x.shape[-1]).index_add_(0, edge_dst, messages)

    return kernels.filter_conv(
        x, weight, edge_src, edge_dst, num_nodes, weight_row, edges=edges, reference=reference
    )


class EquivariantConv(nn.Module):
    r"""NequIP-style equivariant convolution with a learned radial filter.

        h'_i = Linear_2( (1 / sqrt(n_avg)) Σ_{e : dst(e) = i} TP_uvu( Linear_1(h)_{src(e)}, Y(r̂_e); R(edge_radial_e) ) )

    The filter of edge e is R(r_e) Y(r̂_e): the spherical harmonics ``edge_sh`` enter the
    channelwise ("uvu") tensor product and the radial MLP R gives its per-edge weights.
    Messages flow src → dst (neighbour j → centre i); dividing the sum by sqrt(n_avg), the
    average number of neighbours, keeps the variance of the output at that of one message
    (NequIP's normalisation). Only irreps of ``irreps_out`` reachable from
    ``irreps_in ⊗ irreps_sh`` are produced by the product; Linear_2 maps them onto
    ``irreps_out``.

    Args:
        irreps_in: irreps of the node features h.
        irreps_sh: irreps of ``edge_sh``, e.g. ``Irreps.spherical_harmonics(lmax)``.
        irreps_out: irreps of the output node features.
        num_basis: width of ``edge_radial``.
        radial_hidden: hidden widths of the radial MLP R.
        avg_num_neighbors: n_avg in the normalisation.

    Shapes: h: [n_atoms, irreps_in.dim], edge_sh: [n_edges, irreps_sh.dim],
        edge_radial: [n_edges, num_basis], edge_src, edge_dst: [n_edges] → [n_atoms, irreps_out.dim]

    >>> conv = EquivariantConv("8x0e + 8x1o", "0e + 1o + 2e", "8x0e + 8x1o", num_basis=4)
    >>> src, dst = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    >>> conv(torch.randn(3, 32), torch.randn(3, 9), torch.randn(3, 4), src, dst).shape
    torch.Size([3, 32])
    """

    def __init__(
        self,
        irreps_in: Irreps | str,
        irreps_sh: Irreps | str,
        irreps_out: Irreps | str,
        num_basis: int,
        radial_hidden: Sequence[int] = (64,),
        avg_num_neighbors: float = 1.0,
    ) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps_in)
        self.irreps_sh = Irreps(irreps_sh)
        self.irreps_out = Irreps(irreps_out)
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.linear_1 = Linear(self.irreps_in, self.irreps_in)
        self.tensor_product = TensorProduct(
            self.irreps_in,
            self.irreps_sh,
            uvu_paths(self.irreps_in, self.irreps_sh, self.irreps_out),
        )
        self.radial = ScalarMLP([num_basis, *radial_hidden, self.tensor_product.weight_numel])
        self.linear_2 = Linear(self.tensor_product.irreps_out, self.irreps_out)

    def forward(
        self,
        h: Tensor,
        edge_sh: Tensor,
        edge_radial: Tensor,
        edge_src: Tensor,
        edge_dst: Tensor,
        *,
        edges: kernels.Edges | None = None,
    ) -> Tensor:
        x = self.linear_1(h)
        weight = self.radial(edge_radial)  # [n_edges, weight_numel]
        aggregated = self.tensor_product.convolve(
            x, edge_sh, weight, edge_src, edge_dst, h.shape[0], edges=edges
        )
        return self.linear_2(aggregated * (1.0 / math.sqrt(self.avg_num_neighbors)))
