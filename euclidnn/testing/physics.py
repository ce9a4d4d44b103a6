"""Physics checks of models (a model maps a Graph to the energy per structure [n_graphs] eV).

Forces and stress are derivatives of the energy, predictions are invariant or equivariant
under permutations, translations and rotations, a batch is its structures side by side, the
energy is local and smooth at the cutoff, and periodic images are consistent. Each check
casts a deep copy of the model and the graph to ``dtype`` (float64 by default), returns the
largest error it measured and raises ``AssertionError`` when it exceeds the tolerance.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import torch

from euclidnn.data.graph import Graph, collate
from euclidnn.data.structure import Structure
from euclidnn.models.predict import predict

from .o3 import random_o3_elements

__all__ = [
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
    forces = predict(model, graph).forces
    worst = 0.0
    for i in range(graph.positions.shape[0]):
        for a in range(3):
            shifted = []
            for sign in (1.0, -1.0):
                positions = graph.positions.clone()
                positions[i, a] += sign * eps
                shifted.append(
                    _energy(model, dataclasses.replace(graph, positions=positions)).sum()
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
    stress = predict(model, graph, forces=False, stress=True).stress  # [n_graphs, 3, 3]
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
    batch = collate(graphs)
    together = predict(model, batch)
    alone = [predict(model, g) for g in graphs]
    worst = (together.energy - torch.cat([p.energy for p in alone])).abs().max().item()
    worst = max(worst, (together.forces - torch.cat([p.forces for p in alone])).abs().max().item())
    positions = batch.positions.detach().requires_grad_(True)
    energy = model(dataclasses.replace(batch, positions=positions))
    for k in range(batch.num_graphs):
        (grad,) = torch.autograd.grad(energy[k], positions, retain_graph=True)
        outside = batch.batch != k
        if outside.any():
            worst = max(worst, grad[outside].abs().max().item())
    return _check(worst, tolerance, "batch vs one by one")


def assert_local(
    model,
    a: Structure,
    b: Structure,
    r_max: float,
    *,
    tolerance: float = 1e-10,
    dtype=torch.float64,
) -> float:
    """Two molecules farther apart than ``r_max`` (Å): E(a ∪ b) = E(a) + E(b), forces unchanged."""
    model, _ = _prepare(model, None, dtype)
    gap = (a.positions.max(0) - b.positions.min(0)).max() + 2 * r_max + 1.0
    b_far = b.positions + gap  # translate b beyond the cutoff along (1, 1, 1)
    union = Structure(list(a.numbers) + list(b.numbers), list(a.positions) + list(b_far))
    together = predict(model, Graph.from_structure(union, r_max, dtype))
    pa = predict(model, Graph.from_structure(a, r_max, dtype))
    pb = predict(model, Graph.from_structure(b, r_max, dtype))
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
        s = Structure(list(numbers), [[0.0, 0.0, 0.0], [0.0, 0.0, r]])
        return predict(model, Graph.from_structure(s, r_max, dtype))

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
        return predict(model, Graph.from_ase(at, r_max, dtype))

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
    permuted = dataclasses.replace(
        graph,
        positions=graph.positions[perm],
        numbers=graph.numbers[perm],
        batch=graph.batch[perm],
        edge_src=inverse[graph.edge_src],
        edge_dst=inverse[graph.edge_dst],
    )
    p, q = predict(model, graph), predict(model, permuted)
    worst = (p.energy - q.energy).abs().max().item()
    worst = max(worst, (p.forces[perm] - q.forces).abs().max().item())
    return _check(worst, tolerance, "permutation equivariance")


def assert_translation_invariant(
    model, graph, *, tolerance: float = 1e-10, dtype=torch.float64
) -> float:
    """Translating every atom by the same vector changes neither energy nor forces."""
    model, graph = _prepare(model, graph, dtype)
    shift = 3.0 * torch.randn(3, dtype=dtype)
    p = predict(model, graph)
    q = predict(model, dataclasses.replace(graph, positions=graph.positions + shift))
    worst = max((p.energy - q.energy).abs().max().item(), (p.forces - q.forces).abs().max().item())
    return _check(worst, tolerance, "translation invariance")


def rotated_graph(graph, R: torch.Tensor):
    """The graph with positions and cell transformed by R ∈ O(3) (r → R r; edges unchanged)."""
    R = R.to(graph.positions.dtype)
    return dataclasses.replace(graph, positions=graph.positions @ R.T, cell=graph.cell @ R.T)


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
    p = predict(model, graph, stress=stress)
    worst = 0.0
    for R in elements:
        q = predict(model, rotated_graph(graph, R), stress=stress)
        worst = max(worst, (q.energy - p.energy).abs().max().item())
        worst = max(worst, (q.forces - p.forces @ R.T).abs().max().item())
        if stress:
            worst = max(worst, (q.stress - R @ p.stress @ R.T).abs().max().item())
    return _check(worst, tolerance, "rotation equivariance of energy/forces/stress")
