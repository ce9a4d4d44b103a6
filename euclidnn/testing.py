"""Public property checks shared by every test of every module (e3nn's ``util.test``, NequIP's mixin).

Each ``assert_*`` function returns the largest error it measured and raises
``AssertionError`` (with that number) when it exceeds the tolerance.
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
        args_in = [
            torch.randn(batch_size, ir.dim, dtype=dtype, generator=generator)
            if ir is not None
            else None
            for ir in ins
        ]
        if any(a is None for a in args_in):
            raise ValueError("inputs with irreps None need explicit args_in")
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


# ---------------------------------------------------------------------------------------------
# Model-level physics checks (models map a Graph to the energy per structure [n_graphs] eV).
# Each casts a deep copy of the model and the graph to ``dtype`` (float64 by default) and
# returns the largest error it measured.
# ---------------------------------------------------------------------------------------------

import dataclasses as _dataclasses  # noqa: E402

from euclidnn.data.graph import Graph as _Graph  # noqa: E402
from euclidnn.data.graph import collate as _collate  # noqa: E402
from euclidnn.data.structure import Structure as _Structure  # noqa: E402
from euclidnn.models.predict import predict as _predict  # noqa: E402

__all__ += [
    "assert_forces_are_gradient",
    "assert_stress_is_strain_derivative",
    "assert_batch_consistent",
    "assert_local",
    "assert_smooth_at_cutoff",
    "assert_periodic_images_consistent",
    "assert_permutation_equivariant",
    "assert_translation_invariant",
    "assert_rotation_equivariant",
    "rotated_graph",
]


def _prepare(model, graph, dtype):
    model = copy.deepcopy(model).to(dtype).eval()
    return model, graph.to(dtype=dtype) if graph is not None else None


def _check(worst: float, tolerance: float, what: str) -> float:
    if not worst <= tolerance:
        raise AssertionError(f"{what}: error {worst:.3e} > tolerance {tolerance:.1e}")
    return worst


def _energy(model, graph) -> torch.Tensor:
    with torch.no_grad():
        return model(graph)


def assert_forces_are_gradient(
    model, graph, *, eps: float = 1e-4, tolerance: float = 1e-6, dtype=torch.float64
) -> float:
    """Forces from :func:`~euclidnn.models.predict` = central finite differences of −E.

    F_ia ≈ −(E(r + h e_ia) − E(r − h e_ia)) / 2h for every atom i and direction a (edges fixed).
    """
    model, graph = _prepare(model, graph, dtype)
    forces = _predict(model, graph).forces
    worst = 0.0
    for i in range(graph.positions.shape[0]):
        for a in range(3):
            shifted = []
            for sign in (1.0, -1.0):
                positions = graph.positions.clone()
                positions[i, a] += sign * eps
                shifted.append(
                    _energy(model, _dataclasses.replace(graph, positions=positions)).sum()
                )
            numeric = -(shifted[0] - shifted[1]) / (2 * eps)
            worst = max(worst, abs(numeric.item() - forces[i, a].item()))
    worst /= max(1.0, forces.abs().max().item())
    return _check(worst, tolerance, "forces vs finite differences")


def assert_stress_is_strain_derivative(
    model, graph, *, eps: float = 1e-4, tolerance: float = 1e-6, dtype=torch.float64
) -> float:
    """Stress · V = central finite differences of E over each strain component ε_ab.

    The strain acts through :meth:`~euclidnn.data.Graph.deformed` (positions and cell, edges fixed).
    """
    model, graph = _prepare(model, graph, dtype)
    stress = _predict(model, graph, forces=False, stress=True).stress  # [n_graphs, 3, 3]
    volume = torch.linalg.det(graph.cell).abs()
    worst = 0.0
    for a in range(3):
        for b in range(3):
            shifted = []
            for sign in (1.0, -1.0):
                strain = torch.zeros_like(graph.cell)
                strain[:, a, b] = sign * eps
                shifted.append(_energy(model, graph.deformed(graph.positions, strain)))
            numeric = (shifted[0] - shifted[1]) / (2 * eps)  # [n_graphs]
            worst = max(worst, (numeric - stress[:, a, b] * volume).abs().max().item())
    worst /= max(1.0, (stress * volume[:, None, None]).abs().max().item())
    return _check(worst, tolerance, "stress vs strain derivative")


def assert_batch_consistent(
    model, graphs, *, tolerance: float = 1e-10, dtype=torch.float64
) -> float:
    """A batch predicts what its structures predict one by one, and nothing crosses graphs:
    ∂E_g/∂r_i = 0 for every atom i outside graph g."""
    model, _ = _prepare(model, None, dtype)
    graphs = [g.to(dtype=dtype) for g in graphs]
    batch = _collate(graphs)
    together = _predict(model, batch)
    alone = [_predict(model, g) for g in graphs]
    worst = (together.energy - torch.cat([p.energy for p in alone])).abs().max().item()
    worst = max(worst, (together.forces - torch.cat([p.forces for p in alone])).abs().max().item())
    positions = batch.positions.detach().requires_grad_(True)
    energy = model(_dataclasses.replace(batch, positions=positions))
    for k in range(batch.num_graphs):
        (grad,) = torch.autograd.grad(energy[k], positions, retain_graph=True)
        outside = batch.batch != k
        if outside.any():
            worst = max(worst, grad[outside].abs().max().item())
    return _check(worst, tolerance, "batch vs one by one")


def assert_local(
    model,
    a: _Structure,
    b: _Structure,
    r_max: float,
    *,
    tolerance: float = 1e-10,
    dtype=torch.float64,
) -> float:
    """Two molecules farther apart than ``r_max`` (Å): E(a ∪ b) = E(a) + E(b), forces unchanged."""
    model, _ = _prepare(model, None, dtype)
    gap = (a.positions.max(0) - b.positions.min(0)).max() + 2 * r_max + 1.0
    b_far = b.positions + gap  # translate b beyond the cutoff along (1, 1, 1)
    union = _Structure(list(a.numbers) + list(b.numbers), list(a.positions) + list(b_far))
    together = _predict(model, _Graph.from_structure(union, r_max, dtype))
    pa = _predict(model, _Graph.from_structure(a, r_max, dtype))
    pb = _predict(model, _Graph.from_structure(b, r_max, dtype))
    worst = abs(together.energy.item() - pa.energy.item() - pb.energy.item())
    worst = max(worst, (together.forces - torch.cat([pa.forces, pb.forces])).abs().max().item())
    return _check(worst, tolerance, "locality (E(a ∪ b) = E(a) + E(b))")


def assert_smooth_at_cutoff(
    model,
    numbers: Sequence[int],
    r_max: float,
    *,
    delta: float = 1e-5,
    tolerance: float = 1e-6,
    dtype=torch.float64,
) -> float:
    """A dimer's interaction energy and force go continuously to zero at ``r_max``.

    Compares the dimer at r_max − δ with two isolated atoms (r > r_max): |ΔE| and |F| must be
    below ``tolerance``, and both must shrink as δ → 0 (checked at 100 δ and δ).
    """
    model, _ = _prepare(model, None, dtype)

    def dimer(r: float):
        s = _Structure(list(numbers), [[0.0, 0.0, 0.0], [0.0, 0.0, r]])
        return _predict(model, _Graph.from_structure(s, r_max, dtype))

    isolated = dimer(r_max * 1.5).energy.item()
    if dimer(r_max * 1.5).forces.abs().max().item() != 0.0:
        raise AssertionError("atoms beyond the cutoff still exert a force")
    errors = []
    for d in (100 * delta, delta):
        p = dimer(r_max - d)
        errors.append(max(abs(p.energy.item() - isolated), p.forces.abs().max().item()))
    if not errors[1] <= errors[0]:
        raise AssertionError(f"energy/force near the cutoff do not decrease towards it: {errors}")
    return _check(errors[1], tolerance, f"energy/force at r_max − {delta:g} Å")


def assert_periodic_images_consistent(
    model,
    atoms,
    r_max: float,
    *,
    equivalent: Sequence = (),
    supercell=(2, 2, 2),
    tolerance: float = 1e-9,
    dtype=torch.float64,
) -> float:
    """A periodic crystal (``ase.Atoms``) predicts the same energy per atom as its ``supercell``
    and any ``equivalent`` cells (e.g. primitive vs conventional), and the same energy and
    forces when atoms are moved by whole lattice vectors (unwrapped positions)."""
    import numpy as np

    model, _ = _prepare(model, None, dtype)

    def run(at):
        return _predict(model, _Graph.from_ase(at, r_max, dtype))

    reference = run(atoms)
    per_atom = reference.energy.item() / len(atoms)
    worst = 0.0
    for other in [atoms.repeat(supercell), *equivalent]:
        worst = max(worst, abs(run(other).energy.item() / len(other) - per_atom))
    unwrapped = atoms.copy()
    shifts = np.random.default_rng(0).integers(-2, 3, size=(len(atoms), 3))
    unwrapped.positions = atoms.positions + shifts @ np.asarray(atoms.cell)
    moved = run(unwrapped)
    worst = max(worst, abs(moved.energy.item() - reference.energy.item()))
    worst = max(worst, (moved.forces - reference.forces).abs().max().item())
    return _check(worst, tolerance, "periodic images (supercell / equivalent cells / unwrapped)")


def assert_permutation_equivariant(
    model, graph, *, tolerance: float = 1e-10, dtype=torch.float64
) -> float:
    """Relabelling the atoms leaves the energy unchanged and permutes the forces."""
    model, graph = _prepare(model, graph, dtype)
    n = graph.positions.shape[0]
    # permute within each structure so that ``batch`` stays sorted
    perm = torch.cat(
        [
            torch.nonzero(graph.batch == k).flatten()[torch.randperm(int((graph.batch == k).sum()))]
            for k in range(graph.num_graphs)
        ]
    )
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    permuted = _dataclasses.replace(
        graph,
        positions=graph.positions[perm],
        numbers=graph.numbers[perm],
        batch=graph.batch[perm],
        edge_src=inverse[graph.edge_src],
        edge_dst=inverse[graph.edge_dst],
    )
    p, q = _predict(model, graph), _predict(model, permuted)
    worst = (p.energy - q.energy).abs().max().item()
    worst = max(worst, (p.forces[perm] - q.forces).abs().max().item())
    return _check(worst, tolerance, "permutation equivariance")


def assert_translation_invariant(
    model, graph, *, tolerance: float = 1e-10, dtype=torch.float64
) -> float:
    """Translating every atom by the same vector changes neither energy nor forces."""
    model, graph = _prepare(model, graph, dtype)
    shift = 3.0 * torch.randn(3, dtype=dtype)
    p = _predict(model, graph)
    q = _predict(model, _dataclasses.replace(graph, positions=graph.positions + shift))
    worst = max((p.energy - q.energy).abs().max().item(), (p.forces - q.forces).abs().max().item())
    return _check(worst, tolerance, "translation invariance")


def rotated_graph(graph, R: torch.Tensor):
    """The graph with positions and cell transformed by R ∈ O(3) (r → R r; edges unchanged)."""
    R = R.to(graph.positions.dtype)
    return _dataclasses.replace(graph, positions=graph.positions @ R.T, cell=graph.cell @ R.T)


def assert_rotation_equivariant(
    model,
    graph,
    *,
    parity: bool = True,
    stress: bool = False,
    n_elements: int = 4,
    tolerance: float = 1e-9,
    dtype=torch.float64,
) -> float:
    """E(R r) = E(r), F(R r) = R F(r), σ(R r) = R σ Rᵀ for random rotations, and for improper
    elements (with the inversion) too when ``parity``."""
    model, graph = _prepare(model, graph, dtype)
    elements = random_o3_elements(n_elements, dtype=dtype)
    if not parity:
        elements = elements * torch.linalg.det(elements)[:, None, None]
    p = _predict(model, graph, stress=stress)
    worst = 0.0
    for R in elements:
        q = _predict(model, rotated_graph(graph, R), stress=stress)
        worst = max(worst, (q.energy - p.energy).abs().max().item())
        worst = max(worst, (q.forces - p.forces @ R.T).abs().max().item())
        if stress:
            worst = max(worst, (q.stress - R @ p.stress @ R.T).abs().max().item())
    return _check(worst, tolerance, "rotation equivariance of energy/forces/stress")
