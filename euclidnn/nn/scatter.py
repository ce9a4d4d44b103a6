"""Scatter reductions on plain tensors (sum / mean of rows that share an index)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["scatter_mean", "scatter_sum"]


def scatter_sum(src: Tensor, index: Tensor, dim_size: int, dim: int = 0) -> Tensor:
    """Sum the slices of ``src`` that share an index: out[i] = Σ_{e : index[e] = i} src[e].

    Built on ``index_add_`` (deterministic shape, no data-dependent sizes), so it traces under
    ``torch.compile`` and its backward is a gather.

    Args:
        src: values to reduce, reduced along ``dim``.
        index: target row of each slice of ``src`` (int64), e.g. ``edge_dst``.
        dim_size: number of output rows, e.g. ``n_atoms`` (passed, never inferred, so that empty
            trailing rows are kept and nothing syncs with the device).
        dim: dimension of ``src`` to reduce.

    Shapes: src: [n_edges, *f], index: [n_edges] → [dim_size, *f] (for dim = 0)

    >>> scatter_sum(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 2, 0]), dim_size=3)
    tensor([4., 0., 2.])
    """
    dim = dim % src.dim()
    if (
        dim_size == 1
    ):  # one target (one structure): a plain sum; Inductor 2.13 fails on this scatter
        return src.sum(dim, keepdim=True)
    shape = list(src.shape)
    shape[dim] = dim_size
    out = src.new_zeros(shape)
    return out.index_add_(dim, index, src)


def scatter_mean(src: Tensor, index: Tensor, dim_size: int, dim: int = 0) -> Tensor:
    """Mean of the slices of ``src`` that share an index; rows that receive nothing are 0.

    out[i] = Σ_{e : index[e] = i} src[e] / max(1, #{e : index[e] = i})

    Shapes: src: [n_edges, *f], index: [n_edges] → [dim_size, *f] (for dim = 0)

    >>> scatter_mean(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 2, 0]), dim_size=3)
    tensor([2., 0., 2.])
    """
    dim = dim % src.dim()
    total = scatter_sum(src, index, dim_size, dim)
    ones = torch.ones(index.shape[0], dtype=src.dtype, device=src.device)
    count = scatter_sum(ones, index, dim_size).clamp(min=1.0)
    view = [1] * src.dim()
    view[dim] = dim_size
    return total / count.view(view)
