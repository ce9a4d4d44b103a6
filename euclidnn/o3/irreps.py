r"""Irreducible representations of O(3) and their direct sums, as immutable values.

An irrep of O(3) = SO(3) × {I, −I} is labelled by its degree l ≥ 0 and its parity p = ±1.
For g = (R, k) ∈ O(3) (k = 1 for improper elements, det R = −1) it acts on the 2l + 1
components as

.. math::

    D^{l,p}(g) = p^k \, D^l(R \det R),

with :math:`D^l` the Wigner-D matrix of :func:`euclidnn.o3.wigner_D`.

Names and behaviour follow e3nn 0.6 (``Irrep``, ``Irreps``, ``sort() -> (irreps, p, inv)``),
so that code written for e3nn runs with an import change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

import torch

__all__ = ["Irrep", "MulIrrep", "Irreps"]

_IRREP_RE = re.compile(r"^(\d+)([eoy])$")
_MUL_IRREP_RE = re.compile(r"^(?:(\d+)x)?(\d+[eoy])$")


class Irrep(tuple):
    r"""One irreducible representation of O(3): degree ``l`` and parity ``p``.

    ``p = 1`` ("e", even) or ``p = -1`` ("o", odd) is the sign picked up under the inversion
    −I. ``"y"`` in a string means the parity of the spherical harmonics, :math:`(-1)^l`.

    Args:
        l: the degree, or a string such as ``"1o"``, or an ``(l, p)`` pair, or an Irrep.
        p: the parity, +1 or −1 (only when ``l`` is an int).

    Shapes:
        ``D_from_matrix``: R [..., 3, 3] → [..., 2l+1, 2l+1]

    >>> Irrep("1o"), Irrep(2, 1), Irrep("3y")
    (1o, 2e, 3o)
    >>> Irrep("2e") in Irrep("1o") * Irrep("1o")
    True
    >>> Irrep("1o").dim
    3
    """

    __slots__ = ()

    def __new__(cls, l, p=None):  # noqa: E741
        if p is None:
            if isinstance(l, Irrep):
                return l
            if isinstance(l, MulIrrep):
                return l.ir
            if isinstance(l, str):
                match = _IRREP_RE.match(l.strip())
                if match is None:
                    raise ValueError(
                        f"cannot parse irrep {l.strip()!r}: expected e.g. '1o', '2e', '3y'"
                    )
                l, parity = int(match.group(1)), match.group(2)
                p = {"e": 1, "o": -1, "y": (-1) ** l}[parity]
            elif isinstance(l, tuple) and len(l) == 2:
                l, p = l
            else:
                raise ValueError(f"cannot interpret {l!r} as an irrep")
        if not isinstance(l, int) or isinstance(l, bool) or l < 0:
            raise ValueError(f"l must be an int >= 0, got {l!r}")
        if p not in (1, -1):
            raise ValueError(f"parity must be 1 or -1, got {p!r}")
        return super().__new__(cls, (int(l), int(p)))

    @property
    def l(self) -> int:  # noqa: E743
        """The degree l."""
        return self[0]

    @property
    def p(self) -> int:
        """The parity, +1 (even) or −1 (odd)."""
        return self[1]

    @property
    def dim(self) -> int:
        """Dimension 2l + 1."""
        return 2 * self.l + 1

    def is_scalar(self) -> bool:
        """True for 0e."""
        return self.l == 0 and self.p == 1

    def __repr__(self) -> str:
        return f"{self.l}{'e' if self.p == 1 else 'o'}"

    __str__ = __repr__

    def __mul__(self, other) -> Iterator[Irrep]:
        r"""All irreps in the product: :math:`|l_1-l_2| \le l \le l_1+l_2`, parity :math:`p_1 p_2`."""
        other = Irrep(other)
        p = self.p * other.p
        return iter([Irrep(l, p) for l in range(abs(self.l - other.l), self.l + other.l + 1)])

    def __rmul__(self, mul: int) -> Irreps:
        """``3 * Irrep("1e") == Irreps("3x1e")``."""
        if not isinstance(mul, int):
            return NotImplemented
        return Irreps([(mul, self)])

    def __add__(self, other) -> Irreps:
        return Irreps(self) + Irreps(other)

    def D_from_angles(self, alpha, beta, gamma, k=None) -> torch.Tensor:
        r"""Matrix :math:`p^k D^l(\alpha, \beta, \gamma)` (Y-X-Y Euler angles, see ``wigner_D``)."""
        from .wigner import wigner_D

        D = wigner_D(self.l, alpha, beta, gamma)
        if k is None or self.p == 1:
            return D
        k = torch.as_tensor(k, dtype=D.dtype, device=D.device)
        return D * (self.p**k)[..., None, None]

    def D_from_matrix(self, R: torch.Tensor) -> torch.Tensor:
        r"""Representation of any :math:`R \in O(3)`: :math:`p^k D^l(R \det R)`, k = 1 if det R < 0.

        >>> Irrep("1o").D_from_matrix(-torch.eye(3)).long()
        tensor([[-1,  0,  0],
                [ 0, -1,  0],
                [ 0,  0, -1]])
        """
        from .wigner import wigner_D_from_matrix

        d = torch.linalg.det(R).sign()
        D = wigner_D_from_matrix(self.l, R * d[..., None, None])
        if self.p == 1:
            return D
        return D * d[..., None, None]

    def D_from_quaternion(self, q: torch.Tensor, k=None) -> torch.Tensor:
        """Representation of the rotation of a unit quaternion q = (w, x, y, z) [..., 4]."""
        from .rotations import quaternion_to_angles

        return self.D_from_angles(*quaternion_to_angles(q), k)

    def D_from_axis_angle(self, axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        """Representation of the rotation by ``angle`` about ``axis`` [..., 3]."""
        from .rotations import axis_angle_to_angles

        return self.D_from_angles(*axis_angle_to_angles(axis, angle))

    @classmethod
    def iterator(cls, lmax: int | None = None) -> Iterator[Irrep]:
        """0e, 0o, 1o, 1e, 2e, 2o, ... up to lmax (forever if None)."""
        l = 0
        while lmax is None or l <= lmax:
            yield Irrep(l, (-1) ** l)
            yield Irrep(l, -((-1) ** l))
            l += 1


class MulIrrep(NamedTuple):
    """``mul`` copies of one irrep ``ir``; unpacks as ``mul, (l, p)``.

    >>> MulIrrep(3, Irrep("1o")).dim
    9
    """

    mul: int
    ir: Irrep

    @property
    def dim(self) -> int:
        """mul · (2l + 1)."""
        return self.mul * self.ir.dim

    def __repr__(self) -> str:
        return f"{self.mul}x{self.ir}"

    __str__ = __repr__


class _Sorted(NamedTuple):
    irreps: Irreps
    p: tuple  # p[i]: new position of the old term i
    inv: tuple  # inv[j]: old position of the new term j


def _parse(text: str) -> list[MulIrrep]:
    terms = []
    compact = re.sub(r"\s+", "", text)
    if compact == "":
        return terms
    for token in compact.split("+"):
        match = _MUL_IRREP_RE.match(token)
        if match is None:
            raise ValueError(
                f"cannot parse irreps term {token!r} in {text!r}: expected 'MULxLP', e.g. '16x0e'"
            )
        mul = 1 if match.group(1) is None else int(match.group(1))
        terms.append(MulIrrep(mul, Irrep(match.group(2))))
    return terms


class Irreps(tuple):
    r"""Direct sum of irreps with multiplicities: an immutable tuple of ``MulIrrep``.

    Features laid out by an Irreps concatenate its terms; inside a term a
    ``[mul, 2l+1]`` block is flattened (multiplicity-major).

    Args:
        irreps: a string ``"16x0e + 8x1o + 2e"``, an Irrep, an Irreps, or an iterable of
            ``(mul, ir)`` pairs / irreps / strings.

    Shapes:
        ``D_from_matrix``: R [..., 3, 3] → [..., dim, dim]

    >>> irreps = Irreps("16x0e + 8x1o + 2e")
    >>> irreps, irreps.dim, irreps.num_irreps, irreps.lmax
    (16x0e+8x1o+1x2e, 45, 25, 2)
    >>> Irreps("2o + 1e + 0e + 1e").sort()
    _Sorted(irreps=1x0e+1x1e+1x1e+1x2o, p=(3, 1, 0, 2), inv=(2, 1, 3, 0))
    """

    __slots__ = ()

    def __new__(cls, irreps=None):
        if isinstance(irreps, Irreps) and cls is Irreps:
            return irreps
        terms: list[MulIrrep] = []
        if irreps is None:
            pass
        elif isinstance(irreps, Irreps):
            terms = list(irreps)
        elif isinstance(irreps, str):
            terms = _parse(irreps)
        elif isinstance(irreps, Irrep):
            terms = [MulIrrep(1, irreps)]
        elif isinstance(irreps, MulIrrep):
            terms = [irreps]
        else:
            for item in irreps:
                if isinstance(item, MulIrrep):
                    terms.append(item)
                elif isinstance(item, (str, Irrep)):
                    terms.append(MulIrrep(1, Irrep(item)))
                elif isinstance(item, tuple) and len(item) == 2:
                    mul, ir = item
                    if not isinstance(mul, int) or isinstance(mul, bool) or mul < 0:
                        raise ValueError(f"multiplicity must be an int >= 0 in {item!r}")
                    terms.append(MulIrrep(mul, Irrep(ir)))
                else:
                    raise ValueError(f"cannot interpret {item!r} as (mul, irrep)")
        return super().__new__(cls, terms)

    @staticmethod
    def spherical_harmonics(lmax: int, p: int = -1) -> Irreps:
        """Irreps of Y^0 … Y^lmax of a vector of parity p: ``1x0e+1x1o+1x2e+…`` for p = −1.

        >>> Irreps.spherical_harmonics(3)
        1x0e+1x1o+1x2e+1x3o
        """
        return Irreps([(1, Irrep(l, p**l)) for l in range(lmax + 1)])

    @property
    def dim(self) -> int:
        """Σ mul · (2l + 1)."""
        return sum(term.dim for term in self)

    @property
    def num_irreps(self) -> int:
        """Σ mul."""
        return sum(term.mul for term in self)

    @property
    def ls(self) -> list[int]:
        """l of every copy, repeated mul times."""
        return [term.ir.l for term in self for _ in range(term.mul)]

    @property
    def lmax(self) -> int:
        """Largest l present (with mul > 0)."""
        ls = self.ls
        if not ls:
            raise ValueError("lmax of an empty Irreps is undefined")
        return max(ls)

    def slices(self) -> list[slice]:
        """Slice of the feature axis taken by each term.

        >>> Irreps("2x0e + 1e").slices()
        [slice(0, 2, None), slice(2, 5, None)]
        """
        out, start = [], 0
        for term in self:
            out.append(slice(start, start + term.dim))
            start += term.dim
        return out

    def count(self, ir) -> int:
        """Total multiplicity of ``ir``."""
        ir = Irrep(ir)
        return sum(term.mul for term in self if term.ir == ir)

    def __contains__(self, ir) -> bool:
        ir = Irrep(ir)
        return any(term.ir == ir for term in self)

    def simplify(self) -> Irreps:
        """Merge neighbouring equal irreps and drop mul = 0 terms (no reordering).

        >>> Irreps("1e + 1e + 0e + 0x2e + 1e").simplify()
        2x1e+1x0e+1x1e
        """
        out: list[tuple[int, Irrep]] = []
        for mul, ir in self:
            if out and out[-1][1] == ir:
                out[-1] = (out[-1][0] + mul, ir)
            elif mul > 0:
                out.append((mul, ir))
        return Irreps(out)

    def sort(self) -> _Sorted:
        """Stable sort by (l, p) (0o before 0e, as e3nn); returns ``(irreps, p, inv)``."""
        order = sorted(range(len(self)), key=lambda i: (self[i].ir, i))
        inv = tuple(order)
        p = [0] * len(order)
        for new, old in enumerate(order):
            p[old] = new
        return _Sorted(Irreps([self[i] for i in order]), tuple(p), inv)

    def regroup(self) -> Irreps:
        """``sort().irreps.simplify()``."""
        return self.sort().irreps.simplify()

    def __getitem__(self, index):
        out = super().__getitem__(index)
        return Irreps(out) if isinstance(index, slice) else out

    def __add__(self, other) -> Irreps:
        return Irreps(tuple(self) + tuple(Irreps(other)))

    def __radd__(self, other) -> Irreps:
        return Irreps(other) + self

    def __mul__(self, n) -> Irreps:
        """``irreps * n`` repeats the terms n times (the tuple rule, as e3nn)."""
        if isinstance(n, Irreps):
            raise NotImplementedError("use a TensorProduct to multiply two Irreps")
        return Irreps(tuple(self) * n)

    __rmul__ = __mul__

    def __eq__(self, other) -> bool:
        try:
            other = Irreps(other)
        except ValueError:
            return False
        return tuple(self) == tuple(other)

    def __ne__(self, other) -> bool:
        return not self == other

    __hash__ = tuple.__hash__

    def __repr__(self) -> str:
        return "+".join(repr(term) for term in self)

    __str__ = __repr__

    def D_from_angles(self, alpha, beta, gamma, k=None) -> torch.Tensor:
        """Block-diagonal representation from Y-X-Y Euler angles (and k inversions)."""
        cache: dict[Irrep, torch.Tensor] = {}
        blocks = []
        for mul, ir in self:
            if mul and ir not in cache:
                cache[ir] = ir.D_from_angles(alpha, beta, gamma, k)
            blocks += [cache.get(ir)] * mul
        return _block_diag(blocks, alpha, beta, gamma)

    def D_from_matrix(self, R: torch.Tensor) -> torch.Tensor:
        r"""Block-diagonal representation of any R ∈ O(3) (parity from det R).

        >>> R = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
        >>> Irreps("0e + 0o + 1o + 1e").D_from_matrix(-R).diagonal()
        tensor([ 1., -1., -1.,  1.,  1.,  1., -1., -1.])
        """
        from .rotations import matrix_to_angles

        d = torch.linalg.det(R).sign()
        angles = matrix_to_angles(R * d[..., None, None])
        k = (1 - d) / 2  # 1 for improper elements
        return self.D_from_angles(*angles, k)

    def D_from_quaternion(self, q: torch.Tensor, k=None) -> torch.Tensor:
        """Block-diagonal representation of the rotation of unit quaternions q [..., 4]."""
        from .rotations import quaternion_to_angles

        return self.D_from_angles(*quaternion_to_angles(q), k)

    def D_from_axis_angle(self, axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        """Block-diagonal representation of the rotation by ``angle`` about ``axis``."""
        from .rotations import axis_angle_to_angles

        return self.D_from_angles(*axis_angle_to_angles(axis, angle))

    def randn(self, *size: int, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Standard normal features; the one ``-1`` in ``size`` is replaced by ``dim``.

        >>> Irreps("2x1o").randn(5, -1).shape
        torch.Size([5, 6])
        """
        size = tuple(self.dim if s == -1 else s for s in size)
        return torch.randn(size, dtype=dtype, device=device, generator=generator)


def _block_diag(blocks: list[torch.Tensor], *like: torch.Tensor) -> torch.Tensor:
    shape = torch.broadcast_shapes(*(torch.as_tensor(t).shape for t in like))
    if not blocks:
        ref = torch.as_tensor(like[0])
        dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
        return torch.zeros(shape + (0, 0), dtype=dtype, device=ref.device)
    blocks = [b.expand(shape + b.shape[-2:]) for b in blocks]
    dim = sum(b.shape[-1] for b in blocks)
    out = blocks[0].new_zeros(shape + (dim, dim))
    start = 0
    for b in blocks:
        n = b.shape[-1]
        out[..., start : start + n, start : start + n] = b
        start += n
    return out
