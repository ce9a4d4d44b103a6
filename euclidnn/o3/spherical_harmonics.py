r"""Real spherical harmonics of any degree, in e3nn's basis.

With the "standard" coordinates :math:`(x_s, y_s, z_s) = (z, x, y)` (the polar axis is
**y**) and :math:`r^2 = x^2 + y^2 + z^2`, the harmonics are the homogeneous polynomials

.. math::

    Y^l_m(\vec r) = c_l \sqrt{2 - \delta_{m0}} \sqrt{\tfrac{(l-|m|)!}{(l+|m|)!}}\,
        Q^{|m|}_l(z_s, r^2) \times \begin{cases} \operatorname{Im}(x_s + i y_s)^{|m|} & m < 0 \\
        \operatorname{Re}(x_s + i y_s)^{m} & m \ge 0 \end{cases}

where :math:`Q^m_l = r^{l-m} P^m_l(z_s/r) / \sin^m\theta` (associated Legendre functions
without the Condon–Shortley phase), built by the recurrence

.. math::

    Q^m_m = (2m-1)!!, \quad Q^m_{m+1} = (2m+1) z_s Q^m_m, \quad
    (l-m) Q^m_l = (2l-1) z_s Q^m_{l-1} - (l+m-1) r^2 Q^m_{l-2}.

The normalization constant :math:`c_l` is :math:`\sqrt{2l+1}` ("component":
:math:`\|Y^l(\hat r)\|^2 = 2l+1`), 1 ("norm": :math:`\|Y^l(\hat r)\| = 1`) or
:math:`\sqrt{(2l+1)/4\pi}` ("integral": :math:`\int Y^l_m Y^l_m d\Omega = 1`).
This is exactly e3nn 0.6's basis: ``Y^1 ∝ (x, y, z)`` and :math:`Y(Rx) = D(R) Y(x)` with
the Wigner-D matrices of :func:`euclidnn.o3.wigner_D`.

Two exact evaluation paths: for small l (≤ ``_POLY_LMAX``) the recurrence is run once at
first use on symbolic polynomials, giving a constant matrix that maps the monomials
:math:`x^{\otimes l}` to :math:`Y^l`; evaluation is then a few outer products and one matrix
product (fast forward and backward). Larger l run the (normalized, overflow-free)
recurrence on the tensors directly, with no upper limit on l.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from ._constants import constant_table
from .irreps import Irreps

__all__ = ["spherical_harmonics", "spherical_harmonics_gradient"]

_POLY_LMAX = 3
_NORMALIZATIONS = ("component", "norm", "integral")


def _c_l(l: int, normalization: str) -> float:
    if normalization == "component":
        return math.sqrt(2 * l + 1)
    if normalization == "norm":
        return 1.0
    return math.sqrt((2 * l + 1) / (4 * math.pi))


def _as_ls(l) -> list[int]:
    if isinstance(l, int):
        return [l]
    if isinstance(l, str):
        l = Irreps(l)
    if isinstance(l, Irreps):
        out = []
        for mul, ir in l:
            if ir.p != (-1) ** ir.l:
                raise ValueError(f"spherical harmonics of a vector have parity (-1)^l; got {ir}")
            out.extend([ir.l] * mul)
        return out
    return [int(x) for x in l]


# ---------------------------------------------------------------- symbolic polynomials
# A polynomial in (x, y, z) is a dict {(a, b, c): coefficient} for x^a y^b z^c.


def _pmul(p: dict, q: dict) -> dict:
    out: dict = {}
    for (a1, b1, c1), u in p.items():
        for (a2, b2, c2), v in q.items():
            key = (a1 + a2, b1 + b2, c1 + c2)
            out[key] = out.get(key, 0.0) + u * v
    return out


def _padd(p: dict, q: dict, s: float = 1.0, t: float = 1.0) -> dict:
    out = {k: s * v for k, v in p.items()}
    for k, v in q.items():
        out[k] = out.get(k, 0.0) + t * v
    return out


def _symbolic_sh(lmax: int) -> list[list[dict]]:
    """Y^l_m as polynomials, "norm" normalization: result[l][m + l]."""
    x, y, z = {(1, 0, 0): 1.0}, {(0, 1, 0): 1.0}, {(0, 0, 1): 1.0}
    xs, ys, zs = z, x, y
    r2 = _padd(_padd(_pmul(x, x), _pmul(y, y)), _pmul(z, z))
    cos, sin = [{(0, 0, 0): 1.0}], [{}]
    for _ in range(lmax):
        c, s = cos[-1], sin[-1]
        cos.append(_padd(_pmul(c, xs), _pmul(s, ys), 1.0, -1.0))
        sin.append(_padd(_pmul(s, xs), _pmul(c, ys)))
    q = {}
    for m in range(lmax + 1):
        q[m, m] = {(0, 0, 0): float(math.prod(range(1, 2 * m, 2)))}
        if m + 1 <= lmax:
            q[m + 1, m] = {k: (2 * m + 1) * v for k, v in _pmul(zs, q[m, m]).items()}
        for l in range(m + 2, lmax + 1):
            q[l, m] = _padd(
                _pmul(zs, q[l - 1, m]),
                _pmul(r2, q[l - 2, m]),
                (2 * l - 1) / (l - m),
                -(l + m - 1) / (l - m),
            )
    out = []
    for l in range(lmax + 1):
        row = []
        for m in range(-l, l + 1):
            a = abs(m)
            k = math.sqrt((2 - (m == 0)) * math.factorial(l - a) / math.factorial(l + a))
            row.append(
                {key: k * v for key, v in _pmul(q[l, a], sin[a] if m < 0 else cos[a]).items()}
            )
        out.append(row)
    return out


@functools.cache
def _monomials(lmax: int) -> tuple[tuple, tuple]:
    """Exponents (a, b, c) of 1, x, y, z and all monomials up to degree lmax, and for each
    monomial of degree ≥ 2 the (parent index, variable) it is built from."""
    exps = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
    index = {e: i for i, e in enumerate(exps)}
    plan = []
    for d in range(2, lmax + 1):
        for a in range(d, -1, -1):
            for b in range(d - a, -1, -1):
                e = (a, b, d - a - b)
                var = 0 if e[0] else (1 if e[1] else 2)
                parent = tuple(k - (i == var) for i, k in enumerate(e))
                plan.append((index[parent], var))
                index[e] = len(exps)
                exps.append(e)
    return tuple(exps), tuple(plan)


@constant_table
def _poly_matrix(
    ls: tuple, normalization: str, dtype: torch.dtype, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(bias [Σ(2l+1)], M [n_monomials - 1, Σ(2l+1)]) with Y = bias + [x, y, z, x², …] @ M."""
    lmax = max(ls)
    exps, _ = _monomials(max(lmax, 1))
    index = {e: i for i, e in enumerate(exps)}
    sh = _symbolic_sh(lmax)
    columns = []
    for l in ls:
        for m in range(2 * l + 1):
            column = torch.zeros(len(exps), dtype=torch.float64)
            for e, v in sh[l][m].items():
                column[index[e]] += v * _c_l(l, normalization)
            columns.append(column)
    M = torch.stack(columns, dim=1).to(dtype=dtype, device=device)
    return M[0].contiguous(), M[1:].contiguous()


def _sh_poly(
    ls: tuple, x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, normalization: str
) -> torch.Tensor:
    # Monomials are built as contiguous rows [n_monomials, n] (cheap elementwise products of
    # 1-d tensors); one fused matrix product (+ the constant Y^0) combines and transposes them.
    bias, M = _poly_matrix(ls, normalization, x0.dtype, x0.device)
    _, plan = _monomials(max(max(ls), 1))
    cols = [x0, x1, x2]  # cols[i] is monomial i + 1 (monomial 0, the constant, is the bias)
    for parent, var in plan:
        cols.append(cols[parent - 1] * cols[var])
    return torch.addmm(bias, torch.stack(cols, dim=0).T, M)


@constant_table
def _poly_gradient_matrix(
    ls: tuple, normalization: str, dtype: torch.dtype, device
) -> torch.Tensor:
    """B [Σ(2l+1), 3 · n_lower] with ∂/∂x_a ⟨g, Y(x)⟩ = Σ_c (g @ B)[a · n_lower + c] low_c(x):
    the derivatives of the monomials (x, y, z, x², …) of :func:`_poly_matrix` written in the
    monomials low_c of degree < lmax (1, x, y, z, … ; :func:`_lower_monomials`)."""
    lmax = max(ls)
    exps, _ = _monomials(max(lmax, 1))
    index = {e: i for i, e in enumerate(exps)}
    n_lower = sum(1 for e in exps if sum(e) < lmax)
    A = torch.zeros(len(exps) - 1, 3 * n_lower, dtype=torch.float64)
    for k, e in enumerate(exps[1:]):
        for a in range(3):
            if e[a] > 0:
                lower = tuple(v - (i == a) for i, v in enumerate(e))
                A[k, a * n_lower + index[lower]] = e[a]
    _, M = _poly_matrix(ls, normalization, torch.float64, torch.device("cpu"))
    return (M.T @ A).to(dtype=dtype, device=device).contiguous()


def _lower_monomials(
    lmax: int, x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor
) -> torch.Tensor:
    """The monomials of degree < lmax (1, x, y, z, x², …, in :func:`_monomials`' order).

    Shapes: x0, x1, x2: [n] → [n, n_lower]
    """
    exps, plan = _monomials(max(lmax, 1))
    n_lower = sum(1 for e in exps if sum(e) < lmax)
    full = [torch.ones_like(x0), x0, x1, x2]
    for parent, var in plan:
        if len(full) >= n_lower:
            break
        full.append(full[parent] * full[var + 1])
    return torch.stack(full[:n_lower], dim=1)


# ---------------------------------------------------------------- recurrence for any l


@constant_table
def _recurrence_constants(lmax: int, normalization: str, dtype: torch.dtype, device):
    """Normalized recurrence coefficients for Q̃^m_l = sqrt((l-m)!/(l+m)!) Q^m_l."""
    consts = []
    for l in range(lmax + 1):
        m = torch.arange(max(l - 1, 0), dtype=torch.float64)
        a = (2 * l - 1) / torch.sqrt((l - m) * (l + m))
        b = torch.sqrt((l + m - 1) * (l - m - 1) / ((l - m) * (l + m)))
        # Q̃^l_l = (2l-1)!! / sqrt((2l)!), computed in logs to avoid overflow
        log_diag = sum(math.log(k) for k in range(1, 2 * l, 2)) - 0.5 * math.lgamma(2 * l + 1)
        idx = torch.tensor(list(range(l, 0, -1)) + list(range(0, l + 1)))
        scale = torch.full(
            (2 * l + 1,), _c_l(l, normalization) * math.sqrt(2.0), dtype=torch.float64
        )
        scale[l] = _c_l(l, normalization)
        consts.append(
            (
                a[:, None].to(dtype=dtype, device=device),
                b[:, None].to(dtype=dtype, device=device),
                math.exp(log_diag),
                math.sqrt(2 * l - 1) if l > 0 else 0.0,
                idx.to(device),
                scale[:, None].to(dtype=dtype, device=device),
            )
        )
    return consts


def _sh_recurrence(
    ls: Sequence[int], x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, normalization: str
) -> torch.Tensor:
    # Layout [components, n] keeps every operation on contiguous rows.
    lmax = max(ls)
    consts = _recurrence_constants(lmax, normalization, x0.dtype, x0.device)
    ys, zs, xs = x0, x1, x2  # standard coordinates: x_s = z, y_s = x, z_s = y
    r2 = (xs * xs + ys * ys + zs * zs)[None]
    zs1 = zs[None]
    cos, sin = [torch.ones_like(xs)], [torch.zeros_like(xs)]
    for _ in range(lmax):
        c, s = cos[-1], sin[-1]
        cos.append(c * xs - s * ys)
        sin.append(s * xs + c * ys)
    # trig[lmax + m] = Im(w^|m|) for m < 0, Re(w^m) for m >= 0, w = x_s + i y_s
    trig = torch.stack(sin[:0:-1] + cos, dim=0)
    q = []  # q[l]: [l+1, n], Q̃^m_l for m = 0..l
    for l in range(lmax + 1):
        a, b, diag, sub, _, _ = consts[l]
        top = torch.full_like(zs1, diag)
        if l == 0:
            q.append(top)
            continue
        next_to_top = sub * zs1 * q[l - 1][l - 1 : l]  # Q̃^{l-1}_l = sqrt(2l-1) z_s Q̃^{l-1}_{l-1}
        if l == 1:
            q.append(torch.cat([next_to_top, top], dim=0))
            continue
        rest = a * zs1 * q[l - 1][: l - 1] - b * r2 * q[l - 2][: l - 1]
        q.append(torch.cat([rest, next_to_top, top], dim=0))
    out = []
    for l in ls:
        _, _, _, _, idx, scale = consts[l]
        out.append(q[l][idx] * trig[lmax - l : lmax + l + 1] * scale)
    return torch.cat(out, dim=0).T.contiguous()


def spherical_harmonics(
    l, x: torch.Tensor, normalize: bool, normalization: str = "component"
) -> torch.Tensor:
    r"""Real spherical harmonics :math:`Y^l(\vec x)` of any degree (e3nn 0.6's signature and basis).

    The harmonics are homogeneous polynomials of degree l of (x, y, z) with the polar axis
    **y** (see the module docstring for the formula); they satisfy
    :math:`Y^l(R\vec x) = D^l(R) Y^l(\vec x)` and have parity :math:`(-1)^l`.

    Note: our default normalization is ``"component"`` (:math:`\|Y^l(\hat x)\|^2 = 2l+1`,
    :math:`Y^0 = 1`, :math:`Y^1 = \sqrt3\,\hat x`); e3nn's function defaults to
    ``"integral"``. Pass ``normalization`` explicitly when porting code.

    Args:
        l: an int, a list of ints, or an Irreps such as ``"0e + 1o + 2e"``.
        x: vectors [..., 3].
        normalize: project x on the unit sphere first (a zero vector gives Y^{l>0} = 0).
        normalization: ``"component"`` (default), ``"norm"`` or ``"integral"``.

    Shapes:
        x: [..., 3] → [..., Σ_l (2l+1)]; dtype and device follow x.

    >>> spherical_harmonics(1, torch.tensor([[0.0, 0.0, 2.0]]), normalize=True)
    tensor([[0.0000, 0.0000, 1.7321]])
    >>> spherical_harmonics([0, 1, 2], torch.randn(10, 4, 3), normalize=False).shape
    torch.Size([10, 4, 9])
    """
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    ls = _as_ls(l)
    if not ls:
        return x.new_zeros(x.shape[:-1] + (0,))
    if min(ls) < 0:
        raise ValueError(f"l must be >= 0, got {ls}")
    if x.shape[-1] != 3:
        raise ValueError(f"x must have shape [..., 3], got {tuple(x.shape)}")
    batch = x.shape[:-1]
    x0, x1, x2 = x.reshape(-1, 3).unbind(1)
    if normalize:
        # x / max(|x|, 1e-12), as torch.nn.functional.normalize, on the 1-d columns (faster)
        inv = 1 / torch.sqrt(x0 * x0 + x1 * x1 + x2 * x2).clamp_min(1e-12)
        x0, x1, x2 = x0 * inv, x1 * inv, x2 * inv
    lmax = max(ls)
    if lmax <= _POLY_LMAX:
        y = _sh_poly(tuple(ls), x0, x1, x2, normalization)
    else:
        y = _sh_recurrence(ls, x0, x1, x2, normalization)
    return y.reshape(batch + (y.shape[-1],))


def spherical_harmonics_gradient(
    l, x: torch.Tensor, grad: torch.Tensor, normalization: str = "component"
) -> torch.Tensor:
    r"""∂/∂x of :math:`\langle g, Y(\vec x) \rangle` for the harmonics of
    :func:`spherical_harmonics` with ``normalize=False`` (homogeneous polynomials of x): the
    vector–Jacobian product a hand-written backward needs, without autograd.

    For l ≤ 3 it is one matrix product with constant coefficients and the monomials of degree
    < lmax; larger l differentiate :func:`spherical_harmonics` by autograd.

    Shapes: x: [n, 3], grad: [n, Σ_l (2l+1)] → [n, 3]

    >>> x = torch.tensor([[0.3, -0.2, 0.9]], dtype=torch.float64, requires_grad=True)
    >>> g = torch.randn(1, 9, dtype=torch.float64)
    >>> (y,) = torch.autograd.grad(spherical_harmonics([0, 1, 2], x, normalize=False), x, g)
    >>> torch.allclose(spherical_harmonics_gradient([0, 1, 2], x.detach(), g), y)
    True
    """
    ls = _as_ls(l)
    lmax = max(ls, default=0)
    if lmax == 0:
        return torch.zeros_like(x)
    if lmax > _POLY_LMAX or x.dim() != 2:
        with torch.enable_grad():
            at = x.detach().requires_grad_(True)
            y = spherical_harmonics(ls, at, normalize=False, normalization=normalization)
            return torch.autograd.grad(y, at, grad)[0]
    B = _poly_gradient_matrix(tuple(ls), normalization, x.dtype, x.device)
    lower = _lower_monomials(lmax, *x.unbind(1))  # [n, n_lower]
    n, n_lower = lower.shape
    return (grad.mm(B).view(n, 3, n_lower) * lower[:, None, :]).sum(-1)
