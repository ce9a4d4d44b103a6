"""Tensor products and a point convolution: euclidnn vs e3nn 0.6, side by side in one process.

Each case builds the same operation in both libraries with the same weights, asserts that the
outputs agree, then times forward and forward+backward (float32, torch.set_num_threads(2)),
interleaving the two libraries, and reports medians over the repeats (speedup = e3nn / ours).

    python bench/tensor_product.py [--repeats 10] [--json results.json] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import e3nn.nn as enn
import e3nn.o3 as eo
import torch
from e3nn.math import normalize2mom as e3nn_normalize2mom
from machine import header

from euclidnn import kernels
from euclidnn.nn import EquivariantConv, normalize2mom
from euclidnn.o3 import Irreps, spherical_harmonics
from euclidnn.o3.tensor_product import TensorProduct, fully_connected_paths, uvu_paths


def _timed(fn, backward: bool) -> float:
    start = time.perf_counter()
    out = fn()
    if backward:
        out.backward(torch.ones_like(out))
    return (time.perf_counter() - start) * 1e3


def _fc_case(n: int):
    irreps, sh = "32x0e+32x1o+32x2e", "0e+1o+2e"
    ours = TensorProduct(
        irreps, sh, fully_connected_paths(irreps, sh, irreps), internal_weights=True
    )
    theirs = eo.FullyConnectedTensorProduct(irreps, sh, irreps)
    theirs.weight.data.copy_(ours.weight.data)
    x1 = Irreps(irreps).randn(n, -1).requires_grad_(True)
    x2 = Irreps(sh).randn(n, -1).requires_grad_(True)
    return (lambda: ours(x1, x2)), (lambda: theirs(x1, x2))


def _uvu_case(n: int, lmax: int):
    irreps = Irreps("+".join(f"32x{l}{'eo'[l % 2]}" for l in range(lmax + 1)))
    sh = Irreps.spherical_harmonics(lmax)
    paths = uvu_paths(irreps, sh, irreps)
    ours = TensorProduct(irreps, sh, paths)
    ins = [(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight) for p in paths.paths]
    theirs = eo.TensorProduct(
        str(irreps),
        str(sh),
        str(paths.irreps_out),
        ins,
        shared_weights=False,
        internal_weights=False,
    )
    x1 = irreps.randn(n, -1).requires_grad_(True)
    x2 = spherical_harmonics(sh, torch.randn(n, 3), normalize=True).requires_grad_(True)
    w = torch.randn(n, ours.weight_numel, requires_grad=True)
    return (lambda: ours(x1, x2, w)), (lambda: theirs(x1, x2, w))


class _E3nnConv(torch.nn.Module):
    """The same convolution assembled from e3nn parts, with the weights of ``conv`` copied in."""

    def __init__(self, conv: EquivariantConv, hidden: int):
        super().__init__()
        tp = conv.tensor_product
        ins = [(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight) for p in tp.paths]
        self.lin1 = eo.Linear(str(conv.irreps_in), str(conv.irreps_in))
        self.lin2 = eo.Linear(str(tp.irreps_out), str(conv.irreps_out))
        self.tp = eo.TensorProduct(
            str(conv.irreps_in),
            str(conv.irreps_sh),
            str(tp.irreps_out),
            ins,
            shared_weights=False,
            internal_weights=False,
        )
        self.mlp = enn.FullyConnectedNet(
            [conv.radial.dims[0], hidden, tp.weight_numel], torch.nn.functional.silu
        )
        self.lin1.weight.data.copy_(conv.linear_1.weight.data)
        self.lin2.weight.data.copy_(conv.linear_2.weight.data)
        ratio = (
            normalize2mom(torch.nn.functional.silu).cst
            / e3nn_normalize2mom(torch.nn.functional.silu).cst
        )
        for layer, w in zip(self.mlp, conv.radial.weights):
            layer.weight.data.copy_(w.data)
            if getattr(layer, "act", None) is not None:
                layer.act.cst = layer.act.cst * ratio  # quadrature vs Monte-Carlo constant
        self.scale = conv.avg_num_neighbors**-0.5

    def forward(self, h, edge_sh, edge_radial, edge_src, edge_dst):
        messages = self.tp(self.lin1(h)[edge_src], edge_sh, self.mlp(edge_radial))
        out = torch.zeros(h.shape[0], messages.shape[1], dtype=h.dtype).index_add_(
            0, edge_dst, messages
        )
        return self.lin2(out * self.scale)


def _conv_case(n_edges: int, n_atoms: int):
    irreps, sh = Irreps("32x0e+32x1o+32x2e"), Irreps.spherical_harmonics(2)
    ours = EquivariantConv(
        irreps, sh, irreps, num_basis=8, radial_hidden=(64,), avg_num_neighbors=n_edges / n_atoms
    )
    theirs = _E3nnConv(ours, 64)
    edge_src, edge_dst = torch.randint(0, n_atoms, (2, n_edges))
    edge_sh = spherical_harmonics(sh, torch.randn(n_edges, 3), normalize=True)
    edge_radial = torch.randn(n_edges, 8)
    h = irreps.randn(n_atoms, -1).requires_grad_(True)
    args = (h, edge_sh, edge_radial, edge_src, edge_dst)
    # the edges prepared once for the kernel (grouped by atom), as a model does per graph
    # (Graph.derived), outside the timed region like the neighbour list itself
    edges = kernels.Edges(edge_src, edge_dst, n_atoms)
    return (lambda: ours(*args, edges=edges)), (lambda: theirs(*args))


CASES = {
    "fully connected 32x(0e+1o+2e) x (0e+1o+2e), 10k": lambda s: _fc_case(int(10_000 * s)),
    "uvu per-edge, 32x(0e+1o+2e) x SH(2), 20k edges": lambda s: _uvu_case(int(20_000 * s), 2),
    "uvu per-edge, 32x(0e+1o+2e+3o) x SH(3), 20k edges": lambda s: _uvu_case(int(20_000 * s), 3),
    "point convolution, 20k edges / 1k nodes": lambda s: _conv_case(
        int(20_000 * s), int(1_000 * s)
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the sizes (smoke tests)")
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(header(), flush=True)
    torch.manual_seed(0)
    rows = []
    for name, make in CASES.items():
        ours, theirs = make(args.scale)
        with torch.no_grad():
            a, b = ours(), theirs()
        scale = b.abs().max().item()
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * scale), (
            f"{name}: results differ by {(a - b).abs().max():.2e}"
        )
        for backward in (False, True):
            for _ in range(args.warmup):
                _timed(ours, backward), _timed(theirs, backward)
            t_ours, t_theirs = [], []
            for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both
                t_ours.append(_timed(ours, backward))
                t_theirs.append(_timed(theirs, backward))
            mo, me = statistics.median(t_ours), statistics.median(t_theirs)
            case = f"{name}, {'forward+backward' if backward else 'forward'}"
            rows.append(
                {
                    "case": case,
                    "ours_ms": round(mo, 2),
                    "e3nn_ms": round(me, 2),
                    "speedup": round(me / mo, 2),
                }
            )
            print(
                f"{case:<75} ours {mo:9.1f} ms   e3nn {me:9.1f} ms   speedup {me / mo:5.2f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
