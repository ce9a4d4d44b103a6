"""Clebsch–Gordan tensor products of two irreps features, with weights and path normalization.

A *path* couples one input term ``irreps_in1[i_in1] = mul1 x ir1`` with one input term
``irreps_in2[i_in2] = mul2 x ir2`` into one output term ``irreps_out[i_out] = mul_out x ir_out``
(``ir_out`` ∈ ``ir1 ⊗ ir2``) through the Wigner 3j symbol C = ``wigner_3j(l1, l2, l_out)``:

    out[w, k] += α_p Σ_{u,v} W[u, v, w] Σ_{i,j} x1[u, i] x2[v, j] C[i, j, k]     ("uvw")

The connection *mode* says which multiplicity indices the weights couple (e3nn's names):
"uvw" (fully connected), "uvu" (channelwise: output u, sum over v; the convolution case),
"uvv", "uuw", "uuu" (elementwise). α_p is e3nn 0.6's normalization (component irreps,
"element" or "path" path normalization), so results agree number for number with
``e3nn.o3.TensorProduct`` given the same instructions and weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from euclidnn import kernels
from euclidnn.o3 import _shared_product
from euclidnn.o3._contraction import GroupedContraction
from euclidnn.o3.irreps import Irreps
from euclidnn.o3.wigner import wigner_3j

__all__ = [
    "Path",
    "Paths",
    "TensorProduct",
    "elementwise_paths",
    "fully_connected_paths",
    "instruction_paths",
    "uvu_paths",
]

MODES = ("uvw", "uvu", "uvv", "uuw", "uuu")


class Path(NamedTuple):
    """One coupling irreps_in1[i_in1] ⊗ irreps_in2[i_in2] → irreps_out[i_out].

    Attributes:
        i_in1, i_in2, i_out: term indices in the input and output irreps.
        mode: connection mode, one of "uvw", "uvu", "uvv", "uuw", "uuu".
        has_weight: whether the path has learnable weights (else all ones).
        path_weight: extra constant multiplying α_p (e3nn's ``path_weight``).
    """

    i_in1: int
    i_in2: int
    i_out: int
    mode: str
    has_weight: bool = True
    path_weight: float = 1.0


class Paths(NamedTuple):
    """The output irreps and the paths writing into them (what a path builder returns)."""

    irreps_out: Irreps
    paths: tuple[Path, ...]


def instruction_paths(
    irreps_in1: Irreps | str,
    irreps_in2: Irreps | str,
    irreps_out: Irreps | str,
    instructions: Iterable,
) -> Paths:
    """General path list from e3nn-style instructions ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])``.

    >>> p = instruction_paths("2x1o", "1o", "2x0e", [(0, 0, 0, "uvu", True)])
    >>> p.paths[0].mode, str(p.irreps_out)
    ('uvu', '2x0e')
    """
    irreps_in1, irreps_in2, irreps_out = Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out)
    paths = tuple(Path(*ins) for ins in instructions)
    for p in paths:
        (mul1, ir1), (mul2, ir2), (mul_out, ir_out) = (
            irreps_in1[p.i_in1],
            irreps_in2[p.i_in2],
            irreps_out[p.i_out],
        )
        if p.mode not in MODES:
            raise ValueError(f"path {p}: mode must be one of {MODES}")
        if ir_out not in ir1 * ir2:
            raise ValueError(f"path {p}: {ir_out} is not in {ir1} x {ir2}")
        need = {
            "uvu": mul1 == mul_out,
            "uvv": mul2 == mul_out,
            "uuw": mul1 == mul2,
            "uuu": mul1 == mul2 == mul_out,
            "uvw": True,
        }[p.mode]
        if not need:
            raise ValueError(
                f"path {p}: multiplicities {mul1}, {mul2} -> {mul_out} do not fit mode {p.mode}"
            )
    return Paths(irreps_out, paths)


def fully_connected_paths(
    irreps_in1: Irreps | str, irreps_in2: Irreps | str, irreps_out: Irreps | str
) -> Paths:
    """Every allowed ir1 ⊗ ir2 → ir_out with a full "uvw" weight (e3nn's FullyConnectedTensorProduct).

    >>> [(p.i_in1, p.i_in2, p.i_out) for p in fully_connected_paths("0e + 1o", "1o", "0e + 1o + 1e").paths]
    [(0, 0, 1), (1, 0, 0), (1, 0, 2)]
    """
    irreps_in1, irreps_in2, irreps_out = Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out)
    ins = [
        (i1, i2, i_out, "uvw", True)
        for i1, (_, ir1) in enumerate(irreps_in1)
        for i2, (_, ir2) in enumerate(irreps_in2)
        for i_out, (_, ir_out) in enumerate(irreps_out)
        if ir_out in ir1 * ir2
    ]
    return instruction_paths(irreps_in1, irreps_in2, irreps_out, ins)


def uvu_paths(
    irreps_in1: Irreps | str, irreps_in2: Irreps | str, irreps_target: Irreps | str
) -> Paths:
    """Channelwise paths: each ``mul x ir1`` ⊗ ``ir2`` → ``mul x ir_out`` for every ir_out in the target.

    One output term per path (NequIP's convolution, "irreps_mid"), ordered by i_in1, then by
    ir_out (sorted), then by i_in2, so that the paths sharing an input term and an output degree
    fill consecutive output terms (the kernel writes them in one piece); follow with a
    :class:`~euclidnn.o3.Linear` to mix them.

    >>> str(uvu_paths("4x0e + 4x1o", "0e + 1o", "0e + 1o").irreps_out)
    '4x0e+4x1o+4x0e+4x1o'
    """
    irreps_in1, irreps_in2, irreps_target = (
        Irreps(irreps_in1),
        Irreps(irreps_in2),
        Irreps(irreps_target),
    )
    out, ins = [], []
    for i1, (mul, ir1) in enumerate(irreps_in1):
        candidates = sorted(
            (ir_out, i2)
            for i2, (_, ir2) in enumerate(irreps_in2)
            for ir_out in ir1 * ir2
            if ir_out in irreps_target
        )
        for ir_out, i2 in candidates:
            ins.append((i1, i2, len(out), "uvu", True))
            out.append((mul, ir_out))
    return instruction_paths(irreps_in1, irreps_in2, Irreps(out), ins)


def elementwise_paths(
    irreps_in1: Irreps | str, irreps_in2: Irreps | str, irreps_target: Irreps | str | None = None
) -> Paths:
    """Elementwise "uuu" paths between terms of equal position (terms must have equal multiplicities).

    Without a target every ir_out ∈ ir1 ⊗ ir2 is produced, without weights.

    >>> str(elementwise_paths("2x1o", "2x1o", "0e").irreps_out)
    '2x0e'
    """
    irreps_in1, irreps_in2 = Irreps(irreps_in1), Irreps(irreps_in2)
    if len(irreps_in1) != len(irreps_in2):
        raise ValueError(
            f"elementwise product needs the same number of terms: {irreps_in1} vs {irreps_in2}"
        )
    target = None if irreps_target is None else Irreps(irreps_target)
    out, ins = [], []
    for i, ((mul1, ir1), (mul2, ir2)) in enumerate(zip(irreps_in1, irreps_in2)):
        if mul1 != mul2:
            raise ValueError(f"elementwise product: term {i} has multiplicities {mul1} and {mul2}")
        for ir_out in ir1 * ir2:
            if target is None or ir_out in target:
                ins.append((i, i, len(out), "uuu", target is not None))
                out.append((mul1, ir_out))
    return instruction_paths(irreps_in1, irreps_in2, Irreps(out), ins)


def _weight_shape(mode: str, mul1: int, mul2: int, mul_out: int) -> tuple[int, ...]:
    return {
        "uvw": (mul1, mul2, mul_out),
        "uvu": (mul1, mul2),
        "uvv": (mul1, mul2),
        "uuw": (mul1, mul_out),
        "uuu": (mul1,),
    }[mode]


def _num_elements(mode: str, mul1: int, mul2: int) -> int:
    return {"uvw": mul1 * mul2, "uvu": mul2, "uvv": mul1, "uuw": mul1, "uuu": 1}[mode]


class TensorProduct(nn.Module):
    r"""Weighted Clebsch–Gordan tensor product ``x1 ⊗ x2 → out`` along a list of paths.

    out_{i_out}[w, k] = Σ_{paths p → i_out} α_p Σ_{uv} W_p[u, v, w] Σ_{ij} x1_{i_in1}[u, i] x2_{i_in2}[v, j] C^{l1 l2 l_out}_{ijk}

    (written for mode "uvw"; the other modes restrict the multiplicity indices, see the module
    docstring). C is the unit-Frobenius-norm Wigner 3j symbol and, with component normalization,
    α_p = (2 l_out + 1) / Σ_{q → i_out} n_q ("element") or (2 l_out + 1) / (n_p · #{q → i_out})
    ("path"), where n_p is the number of (u, v) pairs summed into one output channel; with
    unit-variance inputs and N(0, 1) weights every output component has unit variance.

    Weights broadcast: ``weight`` of shape ``[weight_numel]`` is shared by the whole batch,
    ``[n_edges, weight_numel]`` is one set per row (the per-edge radial weights of a
    convolution) — one code path. Path weights are laid out one after the other, each
    flattened in the shape (mul1, mul2, mul_out) for "uvw", (mul1, mul2) for "uvu"/"uvv",
    (mul1, mul_out) for "uuw", (mul1,) for "uuu" (e3nn's layout).

    On CPU tensors two cases run the C kernel of :mod:`euclidnn.kernels` (same numbers, any
    order of derivative): "uvu" paths with one set of weights per row (a convolution's
    messages), and "uvw" paths with shared weights (fully connected, e.g. features ⊗ spherical
    harmonics). Both need a multiplicity-1 second input; everything else, and every other
    device, runs the grouped contraction (``self.contraction``, the reference).

    Args:
        irreps_in1: irreps of x1.
        irreps_in2: irreps of x2.
        paths: the output irreps and paths, from :func:`fully_connected_paths`,
            :func:`uvu_paths`, :func:`elementwise_paths` or :func:`instruction_paths`.
        path_normalization: "element" (e3nn's default) or "path".
        internal_weights: own a parameter ``weight`` ~ N(0, 1) used when none is passed.

    Shapes: x1: [..., irreps_in1.dim], x2: [..., irreps_in2.dim], weight: [..., weight_numel]
        or [weight_numel] → [..., irreps_out.dim] (leading shapes broadcast)

    >>> tp = TensorProduct("8x0e + 8x1o", "0e + 1o", uvu_paths("8x0e + 8x1o", "0e + 1o", "0e + 1o"))
    >>> tp.weight_numel, str(tp.irreps_out)
    (32, '8x0e+8x1o+8x0e+8x1o')
    >>> tp(torch.randn(10, 32), torch.randn(10, 4), torch.randn(10, 32)).shape
    torch.Size([10, 64])
    """

    def __init__(
        self,
        irreps_in1: Irreps | str,
        irreps_in2: Irreps | str,
        paths: Paths,
        *,
        path_normalization: str = "element",
        internal_weights: bool = False,
    ) -> None:
        super().__init__()
        if path_normalization not in ("element", "path"):
            raise ValueError(
                f"path_normalization must be 'element' or 'path', got {path_normalization!r}"
            )
        self.irreps_in1 = Irreps(irreps_in1)
        self.irreps_in2 = Irreps(irreps_in2)
        self.irreps_out = Irreps(paths.irreps_out)
        self.irreps_in = (self.irreps_in1, self.irreps_in2)  # for assert_equivariant and wiring
        self.paths = tuple(paths.paths)
        self.path_normalization = path_normalization

        muls = [(self.irreps_in1[p.i_in1].mul, self.irreps_in2[p.i_in2].mul) for p in self.paths]
        coefficients, shapes = [], []
        for p, (mul1, mul2) in zip(self.paths, muls):
            mul_out, ir_out = self.irreps_out[p.i_out]
            siblings = [q for q in self.paths if q.i_out == p.i_out]
            if path_normalization == "element":
                x = sum(
                    _num_elements(
                        q.mode, self.irreps_in1[q.i_in1].mul, self.irreps_in2[q.i_in2].mul
                    )
                    for q in siblings
                )
            else:
                x = _num_elements(p.mode, mul1, mul2) * len(siblings)
            alpha = ir_out.dim / x if x > 0 else ir_out.dim
            coefficients.append(math.sqrt(alpha * p.path_weight))
            shapes.append(_weight_shape(p.mode, mul1, mul2, mul_out) if p.has_weight else ())
        self.path_coefficients = tuple(coefficients)
        self.weight_shapes = tuple(shapes)
        self.weight_numel = sum(math.prod(s) for s in shapes if s)
        self.contraction = GroupedContraction(
            self.irreps_in1,
            self.irreps_in2,
            self.irreps_out,
            self.paths,
            self.path_coefficients,
            wigner_3j,
        )
        self.conv_spec = self._conv_spec()  # None: convolve() runs the composition
        # shared "uvw" weights: the kernel's CG step and one product per term (None: contraction)
        self.shared = _shared_product.shared_product(
            self.irreps_in1, self.irreps_in2, self.irreps_out, self.paths,
            self.path_coefficients, [math.prod(s) for s in shapes], wigner_3j,
        )  # fmt: skip
        perm = _to_ir_mul(self.irreps_in1)
        self.ir_mul_in1 = None if torch.equal(perm, torch.arange(perm.shape[0])) else perm
        if internal_weights:
            self.weight = nn.Parameter(torch.randn(self.weight_numel))
        else:
            self.weight = None

    def forward(self, x1: Tensor, x2: Tensor, weight: Tensor | None = None) -> Tensor:
        if weight is None:
            if self.weight is None:
                if self.weight_numel > 0:
                    raise ValueError("this TensorProduct has no internal weights: pass `weight`")
                weight = x1.new_zeros(0)
            else:
                weight = self.weight
        if weight.shape[-1] != self.weight_numel:
            raise ValueError(
                f"weight has {weight.shape[-1]} entries in its last dimension, expected {self.weight_numel}"
            )
        weight = weight.to(x1.dtype)
        if (
            self.conv_spec is not None
            and x1.dim() == x2.dim() == weight.dim() == 2
            and x2.shape[0] == weight.shape[0] == x1.shape[0]
            and x2.dtype == x1.dtype
            and kernels.fused_conv_available(x1, x2, weight)
        ):  # one row per edge: the fused kernel, each row its own "atom" (no message stored)
            n = x1.shape[0]
            rows = torch.arange(n, device=x1.device)
            return kernels.convolve(
                self.conv_spec, x1, x2, weight, rows, rows, n,
                reference=lambda: self.contraction(x1, x2, weight),
            )  # fmt: skip
        if (
            self.shared is not None
            and weight.dim() == 1
            and x1.dim() == x2.dim() == 2
            and x1.shape[0] == x2.shape[0]
            and kernels.fused_conv_available(x1, x2, weight)
        ):
            x = x1 if self.ir_mul_in1 is None else x1.index_select(1, self.ir_mul_in1)
            return _shared_product.run(self.shared, x, x2, weight)
        return self.contraction(x1, x2, weight)

    def convolve(
        self,
        x1: Tensor,
        x2: Tensor,
        weight: Tensor,
        edge_src: Tensor,
        edge_dst: Tensor,
        num_nodes: int,
        *,
        edges: kernels.Edges | None = None,
    ) -> Tensor:
        """Messages summed into atoms: out[v] = Σ_{e : edge_dst[e] = v} TP(x1[edge_src[e]], x2[e], weight[e]).

        Equal to ``scatter_sum(self(x1[edge_src], x2, weight), edge_dst, num_nodes)``, which is
        what runs in general. For "uvu" paths with a multiplicity-1 second input (spherical
        harmonics: NequIP's convolution) :func:`euclidnn.kernels.convolve` runs it as one fused
        kernel on CPU tensors, which never stores a message per edge (several times faster, any
        order of derivative).

        Args:
            edges: the same edges prepared once for the kernel (:class:`euclidnn.kernels.Edges`,
                e.g. from :meth:`euclidnn.data.Graph.derived`); prepared here when ``None``.

        Shapes: x1: [num_nodes, irreps_in1.dim], x2: [n_edges, irreps_in2.dim],
            weight: [n_edges, weight_numel], edge_src, edge_dst: [n_edges] → [num_nodes, irreps_out.dim]
        """
        weight = weight.to(x1.dtype)
        x2 = x2.to(x1.dtype)

        def reference() -> Tensor:
            messages = self(x1.index_select(0, edge_src), x2, weight)
            return messages.new_zeros(num_nodes, messages.shape[-1]).index_add_(
                0, edge_dst, messages
            )

        if self.conv_spec is None:
            return reference()
        return kernels.convolve(
            self.conv_spec, x1, x2, weight, edge_src, edge_dst, num_nodes,
            edges=edges, reference=reference,
        )  # fmt: skip

    def _conv_spec(self) -> kernels.ConvSpec | None:
        """The quadrilinear form of :meth:`convolve` for the fused kernel, where the paths are
        all weighted "uvu" with a multiplicity-1 second input; else None.

        One entry per nonzero Clebsch–Gordan coefficient of every path, (xo, j, go, wo, U):
        offsets into x1 and the output in the kernel's "ir_mul" layout, into x2 and the weights,
        and the channel count (see ``euclidnn/kernels/_conv.c``).
        """
        if not (
            all(p.mode == "uvu" and p.has_weight for p in self.paths)
            and all(mul == 1 for mul, _ in self.irreps_in2)
        ):
            return None
        offsets1 = _offsets(self.irreps_in1)
        offsets2 = _offsets(self.irreps_in2)
        offsets_out = _offsets(self.irreps_out)
        entries, coefficients, w_offset = [], [], 0
        for p, alpha in zip(self.paths, self.path_coefficients):
            (mul1, ir1), (_, ir2), (_, ir_out) = (
                self.irreps_in1[p.i_in1],
                self.irreps_in2[p.i_in2],
                self.irreps_out[p.i_out],
            )
            cg = wigner_3j(ir1.l, ir2.l, ir_out.l).to(torch.float64)
            for i, j, k in (cg.abs() > 1e-12).nonzero().tolist():
                entries.append(
                    (
                        offsets1[p.i_in1] + i * mul1,
                        offsets2[p.i_in2] + j,
                        offsets_out[p.i_out] + k * mul1,
                        w_offset,
                        mul1,
                    )
                )
                coefficients.append(alpha * cg[i, j, k].item())
            w_offset += mul1
        dims = (self.irreps_in1.dim, self.irreps_in2.dim, self.weight_numel, self.irreps_out.dim)
        return kernels.ConvSpec(
            torch.tensor(entries, dtype=torch.int64).reshape(-1, 5),
            torch.tensor(coefficients, dtype=torch.float64),
            dims,
            _to_ir_mul(self.irreps_in1),
            _to_ir_mul(self.irreps_out).argsort(),
        )

    def extra_repr(self) -> str:
        return (
            f"{self.irreps_in1} x {self.irreps_in2} -> {self.irreps_out}, {len(self.paths)} paths, "
            f"weight_numel={self.weight_numel}, path_normalization={self.path_normalization!r}"
        )


def _offsets(irreps: Irreps) -> list[int]:
    """Column offset of each term of ``irreps``."""
    return [sum(mul * ir.dim for mul, ir in irreps[:i]) for i in range(len(irreps))]


def _to_ir_mul(irreps: Irreps) -> Tensor:
    """Column permutation from e3nn's layout to "ir_mul": ``x[:, perm]`` puts component i of
    channel u of a term at offset i·mul + u instead of u·dim + i.

    Shapes: → [irreps.dim]
    """
    pieces, offset = [], 0
    for mul, ir in irreps:
        pieces.append(torch.arange(mul * ir.dim).view(mul, ir.dim).t().reshape(-1) + offset)
        offset += mul * ir.dim
    return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.int64)
