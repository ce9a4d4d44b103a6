"""Checks of functions and modules of irreps-typed tensors: equivariance under O(3) and the
second moment of their outputs at initialisation.

Each ``assert_*`` function returns what it measured and raises ``AssertionError`` (with that
number) when it is out of tolerance.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch

from euclidnn.o3.irreps import Irreps
from euclidnn.o3.rotations import rand_matrix

__all__ = ["assert_equivariant", "assert_normalized", "random_o3_elements"]

_DEFAULT_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-3}


def random_o3_elements(n: int, dtype=torch.float64, device=None, generator=None) -> torch.Tensor:
    """n elements of O(3) [n, 3, 3]: the inversion −I, then random rotations alternately with
    and without the inversion (so both det = +1 and det = −1 are always covered for n ≥ 3).

    >>> g = random_o3_elements(4)
    >>> torch.linalg.det(g).round().tolist()
    [-1.0, 1.0, -1.0, 1.0]
    """
    R = rand_matrix(n, dtype=dtype, device=device, generator=generator)
    sign = torch.tensor([(-1.0) ** (i + 1) for i in range(n)], dtype=dtype, device=device)
    R = R * sign[:, None, None]
    R[0] = -torch.eye(3, dtype=dtype, device=device)
    return R


def _as_irreps_list(irreps) -> tuple[list, bool]:
    """(list of Irreps or None, whether a single one was given)."""
    if irreps is None or isinstance(irreps, (str, Irreps)):
        return [None if irreps is None else Irreps(irreps)], True
    return [None if ir is None else Irreps(ir) for ir in irreps], False


def _transform(x: torch.Tensor, irreps: Irreps | None, R: torch.Tensor) -> torch.Tensor:
    if irreps is None:
        return x
    D = irreps.D_from_matrix(R).to(dtype=x.dtype, device=x.device)
    return x @ D.T


def _standard_normal_inputs(
    ins: list, batch_size: int, dtype: torch.dtype, generator: torch.Generator | None
) -> list[torch.Tensor]:
    """One standard normal [batch_size, irreps.dim] tensor per irreps, drawn in order."""
    args_in = [
        torch.randn(batch_size, ir.dim, dtype=dtype, generator=generator)
        if ir is not None
        else None
        for ir in ins
    ]
    if any(a is None for a in args_in):
        raise ValueError("inputs with irreps None need explicit args_in")
    return args_in


def assert_equivariant(
    fn: Callable,
    irreps_in=None,
    irreps_out=None,
    *,
    args_in: Sequence[torch.Tensor] | None = None,
    batch_size: int = 5,
    n_elements: int = 4,
    dtype: torch.dtype = torch.float64,
    tolerance: float | None = None,
    generator: torch.Generator | None = None,
) -> float:
    r"""Check :math:`f(D_\text{in}(g)\,x) = D_\text{out}(g)\,f(x)` for random g in O(3).

    The group elements are the inversion −I and random rotations with and without the
    inversion; every input is transformed by ``irreps.D_from_matrix(g)`` (``None`` irreps:
    left as is, e.g. integer indices), and every output likewise.

    Args:
        fn: a function of tensors, or a module; without explicit irreps they are read from
            ``fn.irreps_in`` / ``fn.irreps_out`` (an Irreps, or a tuple for several
            inputs/outputs). A module is deep-copied and cast to ``dtype`` first.
        irreps_in, irreps_out: Irreps (or strings), a list of them, or None per entry.
        args_in: inputs to use; by default standard normal [batch_size, irreps.dim] tensors.
        batch_size: leading dimension of the generated inputs.
        n_elements: how many group elements to try.
        dtype: dtype of generated inputs (and of a module).
        tolerance: largest allowed absolute error; default 1e-10 (float64), 1e-3 (float32).
        generator: random generator for inputs and group elements.

    Returns:
        the largest absolute error over all elements and outputs.

    Shapes:
        inputs: [batch_size, irreps_in.dim] each; outputs: [..., irreps_out.dim] each.

    >>> from euclidnn.o3 import Irreps
    >>> cross = lambda a, b: torch.linalg.cross(a, b)
    >>> assert_equivariant(cross, ["1o", "1o"], "1e") < 1e-10
    True
    """
    if irreps_in is None:
        irreps_in = getattr(fn, "irreps_in", None)
    if irreps_out is None:
        irreps_out = getattr(fn, "irreps_out", None)
    if irreps_in is None and args_in is None:
        raise ValueError("assert_equivariant needs irreps_in (or fn.irreps_in, or args_in)")
    if isinstance(fn, torch.nn.Module):
        fn = copy.deepcopy(fn).to(dtype)
    ins, _ = _as_irreps_list(irreps_in)
    outs, single_out = _as_irreps_list(irreps_out)
    if args_in is None:
        args_in = _standard_normal_inputs(ins, batch_size, dtype, generator)
    args_in = list(args_in)
    if len(args_in) != len(ins):
        raise ValueError(f"{len(args_in)} inputs but {len(ins)} irreps_in")
    reference_dtype = next((a.dtype for a in args_in if a.is_floating_point()), dtype)
    if tolerance is None:
        tolerance = _DEFAULT_TOLERANCE.get(reference_dtype, 1e-3)

    def call(args):
        out = fn(*args)
        return [out] if single_out else list(out)

    with torch.no_grad():
        out_plain = call(args_in)
    if len(out_plain) != len(outs):
        raise ValueError(f"{len(out_plain)} outputs but {len(outs)} irreps_out")
    elements = random_o3_elements(n_elements, dtype=torch.float64, generator=generator)
    worst = 0.0
    for g in elements:
        with torch.no_grad():
            out_rotated_in = call([_transform(a, ir, g) for a, ir in zip(args_in, ins)])
        for y_g, y, ir in zip(out_rotated_in, out_plain, outs):
            error = (y_g - _transform(y, ir, g)).abs().max().item() if y.numel() else 0.0
            worst = max(worst, error)
    if not worst <= tolerance:
        raise AssertionError(f"equivariance error {worst:.3e} > tolerance {tolerance:.1e}")
    return worst


def assert_normalized(
    fn: Callable,
    irreps_in=None,
    *,
    args_in: Sequence[torch.Tensor] | None = None,
    batch_size: int = 4096,
    target: float = 1.0,
    rtol: float = 0.2,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
) -> float:
    r"""Check that unit-second-moment inputs give outputs with second moment ≈ ``target``.

    Inputs default to standard normal [batch_size, irreps.dim] tensors (one per entry of
    ``irreps_in``, read from ``fn.irreps_in`` when not given); the second moment
    mean(y²) of the output is compared with ``target`` within the relative tolerance ``rtol``
    (a statistical check: random weights and inputs make it exact only on average).

    Returns:
        the measured second moment of the output.

    >>> assert_normalized(lambda x: 2.0 * x, "4x0e", target=4.0) > 3.0
    True
    """
    if irreps_in is None:
        irreps_in = getattr(fn, "irreps_in", None)
    if isinstance(fn, torch.nn.Module):
        fn = copy.deepcopy(fn).to(dtype)
    if args_in is None:
        ins, _ = _as_irreps_list(irreps_in)
        args_in = [torch.randn(batch_size, ir.dim, dtype=dtype, generator=generator) for ir in ins]
    with torch.no_grad():
        out = fn(*args_in)
    moment = out.pow(2).mean().item()
    if not abs(moment - target) <= rtol * target:
        raise AssertionError(
            f"output second moment {moment:.3f}, expected {target} ± {rtol * target:.3f}"
        )
    return moment
