r"""NequIP's energy and forces for inference with the chain rule written out
(:func:`energy_and_forces`, what :meth:`euclidnn.models.NequIP.energy_and_forces` runs).

On a small molecule the autograd path is ~830 tensor operations of a few µs each, mostly
bookkeeping: permutations into and out of each equivariant linear map's grouped layout,
concatenations, and the autograd graph of all of it. Here the same function is evaluated with
no autograd graph and few, larger operations:

- features are kept **per degree**: h_l of shape [n_atoms, 2l+1, M_l], the channels of every
  term of degree l side by side (both parities), so each :class:`~euclidnn.o3.Linear` is one
  matrix product per degree with W_l = weight[index] · scale
  (:meth:`~euclidnn.o3.Linear.degree_index`: zero between parities);
- every weight matrix of the model is made from its parameters by one concatenation, one
  product and one gather per call (:class:`_Weights`; nothing is cached across calls, so a
  change of the weights however made is seen); the gate's normalization constants are folded
  into the matrices that read its output;
- the convolution's entries are renumbered into that layout once (:class:`_LayerPlan`), so the
  C kernel (:func:`euclidnn.kernels.conv_partial`) reads and writes it directly, with
  1/sqrt(avg_num_neighbors) folded into its coefficients;
- the radial networks R(r) depend on the length alone: they run once per undirected pair, the
  kernel reading each edge's pair row, and the hidden layers of all interaction layers as one
  batched MLP; the species-dependent self-connection is one product of the features times the
  species one-hot;
- the backward pass is written by hand: the gate, the linear maps (transposed), the
  convolution's three other partial derivatives (the same kernel), the radial MLP, and the
  edge geometry (:mod:`~euclidnn.models.edge_derivatives`,
  :func:`~euclidnn.o3.spherical_harmonics_gradient`).

First derivatives only: training (forces in the loss, double backward) runs autograd through
:meth:`~euclidnn.models.NequIP.forward`, the reference this is tested against.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from euclidnn import kernels
from euclidnn.data.graph import Graph
from euclidnn.models.common import pair_edges
from euclidnn.models.edge_derivatives import (
    bessel_cutoff_and_derivative,
    cell_gradient,
    edge_vector_derivative,
    position_forces,
)
from euclidnn.nn.scatter import scatter_sum
from euclidnn.o3.irreps import Irreps
from euclidnn.o3.linear import Linear
from euclidnn.o3.spherical_harmonics import spherical_harmonics

if TYPE_CHECKING:
    from euclidnn.models.nequip import NequIP

__all__ = [
    "InferencePlan",
    "Topology",
    "atomic_energies_and_edge_gradient",
    "energy_and_forces",
    "topology",
    "weighted_energy_forces",
]

_ACTIVATIONS = {nn.functional.silu: "silu", torch.tanh: "tanh"}


class _Layout(NamedTuple):
    """The per-degree layout of an Irreps: block l is [2l+1, M_l] (component-major), the
    channels of its terms of degree l one after the other; blocks by increasing l."""

    degrees: tuple[int, ...]  # the degrees present (Σ mul > 0), increasing
    channels: dict[int, int]  # M_l
    offsets: dict[int, int]  # first column of block l in the flattened layout
    dim: int


def _layout(irreps: Irreps) -> _Layout:
    channels: dict[int, int] = {}
    for mul, ir in irreps:
        if mul > 0:
            channels[ir.l] = channels.get(ir.l, 0) + mul
    degrees = tuple(sorted(channels))
    offsets, dim = {}, 0
    for l in degrees:  # noqa: E741
        offsets[l] = dim
        dim += (2 * l + 1) * channels[l]
    return _Layout(degrees, channels, offsets, dim)


def _positions(irreps: Irreps) -> dict[int, int]:
    """Column of (term t, component i, channel 0) in the kernel's "ir_mul" layout (term after
    term, each [2l+1, mul]) → the same column in the per-degree layout."""
    layout = _layout(irreps)
    out, start, seen = {}, 0, dict.fromkeys(layout.degrees, 0)
    for mul, ir in irreps:
        if mul == 0:
            continue
        for i in range(ir.dim):
            out[start + i * mul] = layout.offsets[ir.l] + i * layout.channels[ir.l] + seen[ir.l]
        seen[ir.l] += mul
        start += mul * ir.dim
    return out


class _Weights:
    """Every weight matrix of the inference path, made from the model's parameters in a few
    operations per call.

    A matrix entry is ``flat[i] · scale[i]`` with ``flat`` the concatenation of the parameters
    it reads and a trailing zero (the structural zeros between parities): each parameter entry
    feeds one matrix entry, so its constant factor (1/sqrt(fan_in), an activation's constant)
    is applied once, to ``flat``. A matrix whose entries are a run of ``flat`` (the radial
    MLPs') is a view of it; the others are one gather. The structure, fixed at construction,
    lives here; the values are read at every call, so a change of the weights however made is
    seen.
    """

    def __init__(self) -> None:
        self.sources: list[tuple[nn.Module, str]] = []  # (module, parameter name), in order
        self._start: dict[tuple[int, str], int] = {}
        self._size = 0
        self._matrices: list[tuple[Tensor, Tensor]] = []  # (index, scale); index −1: zero

    def start(self, module: nn.Module, name: str) -> int:
        """Where the parameter ``module.name`` begins in ``flat`` (added on first use)."""
        key = (id(module), name)
        if key not in self._start:
            self.sources.append((module, name))
            self._start[key] = self._size
            self._size += module._parameters[name].numel()
        return self._start[key]

    def add(self, index: Tensor, scale: Tensor) -> int:
        """A matrix of ``index.shape`` (scale 0: a structural zero); its number in
        :meth:`matrices`."""
        self._matrices.append((torch.where(scale == 0, -1, index), scale))
        return len(self._matrices) - 1

    def linear(self, linear: Linear, row_scale: dict[int, Tensor]) -> dict[int, int]:
        """W_l (:meth:`~euclidnn.o3.Linear.degree_index`) of every degree with both input and
        output channels, row c multiplied by ``row_scale[l][c]``."""
        out = {}
        for l in sorted({ir.l for _, ir in linear.irreps_out}):  # noqa: E741
            index, scale = linear.degree_index(l)
            if index.numel():
                scale = scale * row_scale[l][:, None]
                out[l] = self.add(index + self.start(linear, "weight"), scale)
        return out

    def done(self) -> None:
        """Fix the layout: the factor of every entry of ``flat``, the runs and the gather."""
        scale = torch.zeros(self._size + 1, dtype=torch.float64)
        used = torch.zeros(self._size + 1, dtype=torch.bool)
        self.runs: list[tuple[int, int] | None] = []  # (start, length) of a matrix that is a run
        gathered, self.shapes = [], []
        for index, factor in self._matrices:
            index, factor = index.flatten(), factor.flatten()
            nonzero = index >= 0
            if bool(used[index[nonzero]].any()):
                raise ValueError("_Weights: a parameter entry feeds two matrix entries")
            used[index[nonzero]] = True
            scale[index[nonzero]] = factor[nonzero]
            self.shapes.append(tuple(self._matrices[len(self.runs)][0].shape))
            run = int(index[0]) if index.numel() and bool(nonzero.all()) else -1
            if run >= 0 and torch.equal(index, torch.arange(run, run + index.numel())):
                self.runs.append((run, index.numel()))
            else:
                self.runs.append(None)
                gathered.append(torch.where(nonzero, index, self._size))  # the trailing zero
        self.index = torch.cat(gathered) if gathered else torch.zeros(0, dtype=torch.int64)
        self.sizes = [math.prod(s) for s, r in zip(self.shapes, self.runs) if r is None]
        self.scale = {d: scale.to(d) for d in (torch.float32, torch.float64)}
        self.zero = {d: torch.zeros(1, dtype=d) for d in (torch.float32, torch.float64)}

    def matrices(self) -> list[Tensor]:
        """The matrices, made from the current parameters (one cat, one product, one gather)."""
        flat = [m._parameters[name].reshape(-1) for m, name in self.sources]
        flat = torch.cat([*flat, self.zero[flat[0].dtype]]).mul_(self.scale[flat[0].dtype])
        gathered = iter(flat.index_select(0, self.index).split(self.sizes))
        return [
            (next(gathered) if run is None else flat.narrow(0, *run)).view(shape)
            for run, shape in zip(self.runs, self.shapes)
        ]


def _species_matrices(
    weights: _Weights, layer, layout_in: _Layout, layout_conv: _Layout, row_scale
) -> dict[int, int]:
    """The self-connection per degree as one matrix [M_in(l) · S, M_conv(l)] on the input
    channels times the species one-hot (row u·S + s: input channel u of an atom of species s),
    rows scaled by ``row_scale[l]``: its Linear maps into S copies of every output term
    (``SpeciesLinear``), channel s·mul + w of each copied term being channel w for species s."""
    sc = layer.self_connection
    S, out = sc.num_species, {}
    start = weights.start(sc.linear, "weight")
    for l in layout_conv.degrees:  # noqa: E741
        if l not in layout_in.degrees:
            continue
        index, scale = sc.linear.degree_index(l)
        columns, copied = [], 0
        for mul, ir in sc.irreps_out:
            if ir.l == l and mul > 0:
                s, w = torch.meshgrid(torch.arange(S), torch.arange(mul), indexing="ij")
                columns.append(copied + s * mul + w)  # [S, mul]
                copied += S * mul
        column = torch.cat(columns, dim=1)  # [S, M_conv(l)]
        index = index[:, column].flatten(0, 1)  # [M_in · S, M_conv]
        scale = (scale * row_scale[l][:, None])[:, column].flatten(0, 1)
        out[l] = weights.add(index + start, scale)
    return out


def _radial_matrices(weights: _Weights, radial: list) -> tuple[list[int], list[int]]:
    """The radial MLPs' matrices (:meth:`~euclidnn.nn.ScalarMLP.matrices`): those of the hidden
    layers stacked over the interaction layers ([num_layers, n_in, n_out] per depth, for
    batched products), and each interaction layer's output matrix [n_hidden, weight_numel]."""
    hidden = []
    for k in range(len(radial[0].weights) - 1):
        index = [
            weights.start(mlp.weights, str(k)) + torch.arange(mlp.weights[k].numel())
            for mlp in radial
        ]
        scale = [
            torch.full_like(i, mlp.matrix_scales()[k], dtype=torch.float64)
            for i, mlp in zip(index, radial)
        ]
        shape = (len(radial), *radial[0].weights[k].shape)
        hidden.append(weights.add(torch.stack(index).view(shape), torch.stack(scale).view(shape)))
    last = []
    for mlp in radial:
        w = mlp.weights[-1]
        index = weights.start(mlp.weights, str(len(mlp.weights) - 1)) + torch.arange(w.numel())
        scale = torch.full(w.shape, mlp.matrix_scales()[-1], dtype=torch.float64)
        last.append(weights.add(index.view(w.shape), scale))
    return hidden, last


def _runs(irreps: Irreps, acts, start: int) -> list[tuple[int, int, str, float]] | None:
    """(first channel, count, activation, constant) over consecutive scalar terms with the same
    activation φ̃ = cst · φ (φ silu or tanh); ``None`` where an activation is another. The path
    computes φ and folds cst into the matrices that read its output (:func:`_layer_plan`)."""
    runs: list[list] = []
    for (mul, _), act in zip(irreps, acts):
        base, cst = getattr(act, "__wrapped__", act), getattr(act, "cst", 1.0)
        if base not in _ACTIVATIONS:
            return None
        kind = (_ACTIVATIONS[base], cst)
        if runs and (runs[-1][2], runs[-1][3]) == kind:
            runs[-1][1] += mul
        else:
            runs.append([start, mul, *kind])
        start += mul
    return [tuple(r) for r in runs if r[1] > 0]


class _LayerPlan(NamedTuple):
    """One interaction layer in the per-degree layout (everything but the weights' values)."""

    spec: kernels.ConvSpec  # the convolution, renumbered into the per-degree layouts
    layout_in: _Layout  # h
    layout_mid: _Layout  # the convolution's output
    layout_conv: _Layout  # the gate's input
    linear_1: dict[int, int]  # degree → number of the matrix (:class:`_Weights`)
    linear_2: dict[int, int]
    self_connection: dict[int, int]  # degree → [M_in(l) · S, M_conv(l)]
    num_scalars: int  # the gate's scalars: the first channels of its degree-0 block
    scalar_runs: list  # activations of the scalars in the gate's degree-0 block
    gate_runs: list  # activations of the gates (after the scalars in that block)
    gate_of: dict[int, tuple[int, int] | Tensor]  # gated degree l → the gate of each channel
    gates_in_order: bool  # the gated channels, degree after degree, are gates 0, 1, 2, …
    out_scale: dict[int, Tensor]  # the constant cst of each output channel (not applied)


def _layer_plan(layer, weights: _Weights, in_scale) -> _LayerPlan | None:
    """The plan of one layer whose input channels carry the constants ``in_scale`` (degree →
    [M_l]) left out by the layer before; ``None`` where the path does not apply."""
    conv, gate = layer.conv, layer.gate
    tp = conv.tensor_product
    linears = [conv.linear_1, conv.linear_2]
    if layer.self_connection is not None:
        linears.append(layer.self_connection.linear)
    if tp.conv_spec is None or any(lin.bias is not None for lin in linears):
        return None
    layout_in, layout_mid = _layout(layer.irreps_in), _layout(tp.irreps_out)
    layout_conv = _layout(gate.irreps_in)
    x_pos, g_pos = _positions(tp.irreps_in1), _positions(tp.irreps_out)
    spec = tp.conv_spec
    entries = spec.entries.clone()
    entries[:, 0] = torch.tensor([x_pos[int(v)] for v in spec.entries[:, 0]], dtype=torch.int64)
    entries[:, 2] = torch.tensor([g_pos[int(v)] for v in spec.entries[:, 2]], dtype=torch.int64)
    coefficients = spec.coefficients[torch.float64] / conv.avg_num_neighbors**0.5
    dims = (layout_in.dim, spec.dims[1], spec.dims[2], layout_mid.dim)
    scalar_runs = _runs(gate.irreps_scalars, gate.act_scalars, 0)
    gate_runs = _runs(gate.irreps_gates, gate.act_gates, gate.irreps_scalars.dim)
    if scalar_runs is None or gate_runs is None:
        return None
    gate_of, k = {}, 0  # gated channel k (over the gated terms, in order) is gated by gate k
    for mul, ir in gate.irreps_gated:
        gate_of.setdefault(ir.l, []).extend(range(k, k + mul))
        k += mul
    order = [g for l in sorted(gate_of) for g in gate_of[l]]  # noqa: E741
    gate_scale = torch.ones(gate.irreps_gates.dim, dtype=torch.float64)
    for start, count, _, cst in gate_runs:
        gate_scale[start - gate.irreps_scalars.dim : start - gate.irreps_scalars.dim + count] = cst
    out_scale = {l: gate_scale[torch.tensor(c)] for l, c in gate_of.items()}  # noqa: E741
    if scalar_runs:
        out_scale[0] = torch.cat(
            [torch.full((count,), cst, dtype=torch.float64) for _, count, _, cst in scalar_runs]
        )
    unscaled = {d: torch.ones(m, dtype=torch.float64) for d, m in layout_mid.channels.items()}
    return _LayerPlan(
        kernels.ConvSpec(entries, coefficients, dims),
        layout_in,
        layout_mid,
        layout_conv,
        weights.linear(conv.linear_1, in_scale),
        weights.linear(conv.linear_2, unscaled),
        {}
        if layer.self_connection is None
        else _species_matrices(weights, layer, layout_in, layout_conv, in_scale),
        gate.irreps_scalars.dim,
        scalar_runs,
        gate_runs,
        {l: _run(torch.tensor(c)) for l, c in gate_of.items()},  # noqa: E741
        order == list(range(len(order))),
        out_scale,
    )


class InferencePlan:
    """What :func:`energy_and_forces` needs of a :class:`~euclidnn.models.NequIP` beyond its
    weights: the layouts and index maps of every layer, built once from the model's modules
    (no weight values: those are read at every call). ``modules`` are the module objects it was
    built from; :meth:`applies` checks that the model still has exactly these, unhooked."""

    def __init__(self, model: NequIP) -> None:
        self.layers: list[_LayerPlan] | None = None
        radial = [layer.conv.radial for layer in model.layers]
        if any(r.dims[:-1] != radial[0].dims[:-1] for r in radial) or any(
            getattr(r.act, "__wrapped__", r.act) is not nn.functional.silu for r in radial
        ):
            return
        self.weights, plans = _Weights(), []
        scale = {0: torch.ones(model.config.num_features, dtype=torch.float64)}
        for layer in model.layers:
            plans.append(_layer_plan(layer, self.weights, scale))
            if plans[-1] is None:
                return
            scale = plans[-1].out_scale
        if model.readout.bias is not None:
            return
        self.radial_hidden, self.radial_last = _radial_matrices(self.weights, radial)
        self.readout = self.weights.linear(model.readout, scale)[0]
        self.weights.done()
        self.layers = plans
        self.modules = _modules(model)

    def applies(self, model: NequIP) -> bool:
        """Whether the model still computes what this plan does: the same module objects, no
        forward hooks on them (or global ones)."""
        if self.layers is None:
            return False
        if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
            return False
        now = _modules(model)
        return len(now) == len(self.modules) and all(
            a is b and not (a._forward_hooks or a._forward_pre_hooks)
            for a, b in zip(now, self.modules)
        )


def _modules(model: NequIP) -> list[nn.Module]:
    """Every module the computation goes through, read from the modules' own dicts (this runs
    at every call: attribute lookups on an nn.Module cost about a microsecond each)."""
    top = model._modules
    out = [model, *(top[k] for k in ("species_index", "embedding", "readout", "scale_shift"))]
    out.append(top["layers"])
    for layer in top["layers"]._modules.values():
        m = layer._modules
        conv = m["conv"]._modules
        out += [layer, m["conv"], m["gate"], *conv.values(), conv["radial"]._modules["weights"]]
        if m.get("self_connection") is not None:
            out += [m["self_connection"], m["self_connection"]._modules["linear"]]
    return out


def _run(index: Tensor) -> tuple[int, int] | Tensor:
    """``(start, length)`` where ``index`` is start, start + 1, …, else ``index`` itself."""
    n = index.shape[0]
    if n and torch.equal(index, torch.arange(int(index[0]), int(index[0]) + n)):
        return int(index[0]), n
    return index


def _columns(x: Tensor, index: tuple[int, int] | Tensor) -> Tensor:
    """``x[:, index]``, a view for a run (:func:`_run`)."""
    return x.narrow(1, *index) if isinstance(index, tuple) else x.index_select(1, index)


def _activate(kind: str, pre: Tensor) -> tuple[Tensor, Tensor]:
    """(φ(pre), what :func:`_activate_backward` needs)."""
    y = nn.functional.silu(pre) if kind == "silu" else torch.tanh(pre)
    return y, (pre if kind == "silu" else y)


def _activate_backward(kind: str, grad: Tensor, kept: Tensor) -> Tensor:
    if kind == "silu":
        return torch.ops.aten.silu_backward(grad, kept)
    return torch.ops.aten.tanh_backward(grad, kept)


class _Kept(NamedTuple):
    """What the backward pass of one layer needs from its forward pass."""

    x: Tensor  # Linear_1 h, the convolution's input
    w: Tensor  # the radial weights [n_pairs, weight_numel]
    out: dict[int, Tensor]  # the gate's input per degree
    activations: list[Tensor]  # per run of scalars and gates (:func:`_activate`)
    gates: Tensor  # the activated gates [n_atoms, number of gates]


def _species_rows(h: Tensor, one_hot: Tensor | None) -> Tensor:
    """Rows of h times the species one-hot [n, 1, 1, S], [n·d, M · S] (h itself for one
    species)."""
    n, d, m = h.shape
    if one_hot is None:
        return h.view(n * d, m)
    return (h.unsqueeze(-1) * one_hot).view(n * d, -1)


def _layer_forward(plan: _LayerPlan, matrices: list[Tensor], h, sh, w, one_hot, edges, n: int):
    """One :class:`~euclidnn.models.NequIPLayer` on per-degree features (the gate's constants
    left out, see :func:`_runs`), and what its backward needs."""
    x = [_product(h[l], matrices[plan.linear_1[l]]).view(n, -1) for l in plan.layout_in.degrees]  # noqa: E741
    x = torch.cat(x, dim=1) if len(x) > 1 else x[0]
    agg = kernels.conv_partial(plan.spec, edges, 3, x, sh, w, None)  # [n, layout_mid.dim]
    out = {}
    for l in plan.layout_conv.degrees:  # noqa: E741
        d, mid = 2 * l + 1, plan.layout_mid
        o = None
        if l in plan.linear_2:
            part = agg.narrow(1, mid.offsets[l], d * mid.channels[l])
            o = _product(part.view(n, d, -1), matrices[plan.linear_2[l]]).view(n * d, -1)
        if l in plan.self_connection:  # + SC_{Z_i}(h_i)
            rows, ws = _species_rows(h[l], one_hot), matrices[plan.self_connection[l]]
            o = rows.mm(ws) if o is None else torch.addmm(o, rows, ws)
        out[l] = (
            agg.new_zeros(n, d, plan.layout_conv.channels[l]) if o is None else o.view(n, d, -1)
        )
    pre = out[0].view(n, -1) if 0 in out else agg.new_zeros(n, 0)
    activated, kept = [], []
    for start, count, kind, _ in plan.scalar_runs + plan.gate_runs:
        y, k = _activate(kind, pre.narrow(1, start, count))
        activated.append(y)
        kept.append(k)
    scalars, gate_parts = activated[: len(plan.scalar_runs)], activated[len(plan.scalar_runs) :]
    gates = (
        pre.new_zeros(n, 0)
        if not gate_parts
        else torch.cat(gate_parts, dim=1)
        if len(gate_parts) > 1
        else gate_parts[0]
    )
    h_out = {}
    if scalars:
        h_out[0] = (torch.cat(scalars, dim=1) if len(scalars) > 1 else scalars[0]).view(n, 1, -1)
    for l, index in plan.gate_of.items():  # noqa: E741
        h_out[l] = out[l] * _columns(gates, index)[:, None, :]
    return h_out, _Kept(x, w, out, kept, gates)


def _product(x: Tensor, matrix: Tensor) -> Tensor:
    """x[a, m, :] @ matrix for every atom a and component m, as one 2-d product.

    Shapes: x: [n, d, M_in] (any strides), matrix: [M_in, M_out] → [n, d, M_out]
    """
    n, d, m = x.shape
    return (x.reshape(n * d, m) if d > 1 else x.view(n, m)).mm(matrix).view(n, d, -1)


def _layer_backward(
    plan: _LayerPlan, matrices, kept: _Kept, g_h, sh, one_hot, edges, n: int, input_grad: bool
):
    """Gradients (h, Y, radial weights) of ⟨g_h, layer output⟩ of :func:`_layer_forward`."""
    g_out, g_gated = {}, []
    for l, index in plan.gate_of.items():  # noqa: E741
        g = g_h[l]
        g_out[l] = g * _columns(kept.gates, index)[:, None, :]
        g_gated.append((g * kept.out[l]).sum(1))  # [n, M_l]
    if plan.gates_in_order:
        g_gate = torch.cat(g_gated, dim=1) if len(g_gated) > 1 else g_gated[0] if g_gated else None
    else:
        g_gate = kept.gates.new_zeros(n, kept.gates.shape[1])
        for index, g in zip(plan.gate_of.values(), g_gated):
            if isinstance(index, tuple):
                index = torch.arange(index[0], index[0] + index[1])
            g_gate.index_add_(1, index, g)
    g_pre = []
    for (start, count, kind, _), k in zip(plan.scalar_runs + plan.gate_runs, kept.activations):
        if start < plan.num_scalars:
            g = g_h[0].view(n, -1).narrow(1, start, count)
        else:
            g = g_gate.narrow(1, start - plan.num_scalars, count)
        g_pre.append(_activate_backward(kind, g, k))
    if g_pre:
        g_out[0] = (torch.cat(g_pre, dim=1) if len(g_pre) > 1 else g_pre[0]).view(n, 1, -1)
    mid, parts = plan.layout_mid, []
    for l in mid.degrees:  # noqa: E741
        if l in plan.linear_2:
            parts.append(_product(g_out[l], matrices[plan.linear_2[l]].t()).view(n, -1))
        else:
            parts.append(sh.new_zeros(n, (2 * l + 1) * mid.channels[l]))
    g_agg = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
    g_w = kernels.conv_partial(plan.spec, edges, 2, kept.x, sh, None, g_agg)
    g_sh = kernels.conv_partial(plan.spec, edges, 1, kept.x, None, kept.w, g_agg)
    g_in = {}
    for l, i in plan.self_connection.items():  # noqa: E741
        d, m = 2 * l + 1, plan.layout_in.channels[l]
        g = g_out[l].view(n * d, -1).mm(matrices[i].t())  # [n·d, M_in · S]
        g_in[l] = g.view(n, d, m) if one_hot is None else (g.view(n, d, m, -1) * one_hot).sum(-1)
    if input_grad:
        g_x = kernels.conv_partial(plan.spec, edges, 0, None, sh, kept.w, g_agg)
        layout = plan.layout_in
        for l in layout.degrees:  # noqa: E741
            d = 2 * l + 1
            part = g_x.narrow(1, layout.offsets[l], d * layout.channels[l]).view(n, d, -1)
            g = _product(part, matrices[plan.linear_1[l]].t())
            g_in[l] = g_in[l] + g if l in g_in else g
    return g_in, g_sh, g_w


def _radial_forward(
    hidden: list[Tensor], last: list[Tensor], edge_radial: Tensor
) -> tuple[list[Tensor], list[Tensor]]:
    """The radial MLPs R_t(edge_radial) of all layers (matrices of :func:`_radial_matrices`),
    the hidden layers as one batched MLP, and its pre-activations.

    Shapes: edge_radial: [n_rows, num_basis] → [[n_rows, weight_numel_t] for each layer t]
    """
    if not hidden:
        return [edge_radial.mm(m) for m in last], []
    a, pre = torch.matmul(edge_radial, hidden[0]), []
    for m in hidden[1:]:
        pre.append(a)
        a = torch.bmm(nn.functional.silu(a), m)
    pre.append(a)
    a = nn.functional.silu(a)
    return [a_t.mm(m) for a_t, m in zip(a, last)], pre


def _radial_backward(
    g: list[Tensor], hidden: list[Tensor], last: list[Tensor], pre: list[Tensor]
) -> Tensor:
    """∂/∂edge_radial of Σ_t ⟨g_t, R_t⟩ of :func:`_radial_forward`.

    Shapes: g: [[n_rows, weight_numel_t] for each layer t] → [n_rows, num_basis]
    """
    g = [g_t.mm(m.t()) for g_t, m in zip(g, last)]
    if not hidden:
        return torch.stack(g).sum(0)
    g = torch.ops.aten.silu_backward(torch.stack(g), pre[-1])
    for k in range(len(hidden) - 1, 0, -1):
        g = torch.ops.aten.silu_backward(torch.bmm(g, hidden[k].transpose(1, 2)), pre[k - 1])
    return torch.bmm(g, hidden[0].transpose(1, 2)).sum(0)


class Topology(NamedTuple):
    """What :func:`energy_and_forces` reads of a graph's topology (:func:`topology`)."""

    edges: kernels.Edges  # the edges reading the rows of their undirected pairs, prepared
    pair_edge: Tensor  # [n_pairs] an edge of each undirected pair
    species: Tensor  # [n_atoms] the model's species row of each atom
    one_hot: Tensor | None  # [n_atoms, 1, 1, S] the species one-hot (None: one species)


def topology(model: NequIP, graph: Graph) -> Topology:
    """The graph's topology as :func:`energy_and_forces` reads it, kept with the graph
    (:meth:`~euclidnn.data.Graph.derived`): an MD step on the same edges reuses it. Made
    outside inference mode, so that the kept tensors can serve autograd later."""
    edges = pair_edges(graph)
    if not torch.jit.is_tracing():  # (a recorded op checks and orders its edges at every call)
        edges.prepared()  # every index checked, the edge orders made
    species = model.species_index.of_graph(graph)
    one_hot, species_list = None, model.config.species
    dtype = graph.positions.dtype
    if len(species_list) > 1:
        one_hot = graph.derived(
            f"species one-hot {species_list} {dtype}",
            lambda g: nn.functional.one_hot(species, len(species_list)).to(dtype)[:, None, None],
        )
    return Topology(edges, graph.edge_pairs()[0], species, one_hot)


def energy_and_forces(
    model: NequIP, plan: InferencePlan, graph: Graph, top: Topology
) -> tuple[Tensor, Tensor]:
    """Energy per structure and forces of ``model`` (the function of
    :meth:`~euclidnn.models.NequIP.forward`), the derivative written by hand; call without
    autograd (in inference mode: a few hundred small operations, each cheaper there), where
    ``plan.applies(model)`` and :func:`euclidnn.kernels.fused_conv_available`. ``top``: the
    graph's :func:`topology`.

    Shapes: graph (n_atoms, n_edges, n_graphs) → ([n_graphs] eV, [n_atoms, 3] eV/Å)
    """
    atom_energy, g_vec = atomic_energies_and_edge_gradient(model, plan, graph, top)
    energy = scatter_sum(atom_energy, graph.batch, dim_size=graph.num_graphs)
    return energy, position_forces(graph, g_vec)


def weighted_energy_forces(
    model: NequIP, plan: InferencePlan, graph: Graph, top: Topology, weight: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-atom energies E_i, the forces −∂(Σ_i weight_i E_i)/∂R and the cell derivative
    ∂(Σ_i weight_i E_i)/∂cell of one structure, the derivative written by hand (what an
    exported NequIP's ``energy_forces`` traces, the kernel recorded as its custom op; LAMMPS
    passes weight 1 for owned atoms, 0 for ghosts). Conditions as :func:`energy_and_forces`.

    The edge vector r_e = R[src] − R[dst] + edge_shift_e · cell, so
    ∂E/∂cell[k, c] = Σ_e edge_shift[e, k] · ∂E/∂r_e[c], i.e. edge_shiftᵀ · ∂E/∂r.

    Shapes: graph (n_atoms, n_edges, one structure), weight: [n_atoms]
        → ([n_atoms] eV, [n_atoms, 3] eV/Å, [3, 3] eV/Å)
    """
    atom_energy, g_vec = atomic_energies_and_edge_gradient(model, plan, graph, top, weight)
    return atom_energy, position_forces(graph, g_vec), cell_gradient(graph, g_vec)


def atomic_energies_and_edge_gradient(
    model: NequIP, plan: InferencePlan, graph: Graph, top: Topology, weight: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """E_i of every atom and ∂(Σ_i weight_i E_i)/∂(edge vectors) (weight default ones): the
    forward pass and the hand-written backward of :func:`energy_and_forces`.

    Shapes: graph (n_atoms, n_edges), weight: [n_atoms] → ([n_atoms] eV, [n_edges, 3] eV/Å)
    """
    cfg, n = model.config, graph.positions.shape[0]
    edge_vec = graph.edge_vectors()  # [n_edges, 3] Å
    r = edge_vec.norm(dim=-1)  # [n_edges]
    sh = spherical_harmonics(model.irreps_sh, edge_vec, normalize=True)  # [n_edges, (lmax+1)²]
    # the radial part depends on the length alone: once per undirected pair (edges.row)
    edges, pair_edge, species, one_hot = top
    pair_len = r.index_select(0, pair_edge)  # [n_pairs]
    pair_radial, pair_radial_dr = bessel_cutoff_and_derivative(
        pair_len, cfg.r_max, cfg.num_basis, cfg.polynomial_p
    )  # [n_pairs, num_basis]
    matrices = plan.weights.matrices()
    hidden = [matrices[i] for i in plan.radial_hidden]
    last = [matrices[i] for i in plan.radial_last]
    radial, pre = _radial_forward(hidden, last, pair_radial)  # [n_pairs, wn_t] each
    dtype = edge_vec.dtype
    h = {0: model.embedding.weight.index_select(0, species).to(dtype).view(n, 1, -1)}
    kept = []
    for layer_plan, w in zip(plan.layers, radial):
        h, k = _layer_forward(layer_plan, matrices, h, sh, w, one_hot, edges, n)
        kept.append(k)
    readout = matrices[plan.readout]  # [M_0, 1]
    scale_shift = model.scale_shift
    scales = scale_shift.scales.to(dtype)[species]
    atom_energy = (h[0].view(n, -1) @ readout).squeeze(-1)
    atom_energy = atom_energy * scales + scale_shift.shifts.to(dtype)[species]

    seed = scales if weight is None else scales * weight  # ∂(Σ weight_i E_i)/∂(readout_i)
    g_h = {0: (seed[:, None] * readout.t()).view(n, 1, -1)}
    g_sh, g_radial = torch.zeros_like(sh), []
    for t in range(len(kept) - 1, -1, -1):
        g_h, g_sh_t, g_w = _layer_backward(
            plan.layers[t], matrices, kept[t], g_h, sh, one_hot, edges, n, t > 0
        )
        g_sh += g_sh_t
        g_radial.append(g_w)
    g_radial = _radial_backward(g_radial[::-1], hidden, last, pre)
    g_pair = (g_radial * pair_radial_dr).sum(1)  # ∂E/∂(pair length)
    g_r = torch.zeros_like(r).index_add_(0, pair_edge, g_pair)
    g_vec = edge_vector_derivative(edge_vec, r, sh, g_sh, g_r, cfg.lmax)  # ∂E/∂edge_vec
    return atom_energy, g_vec
