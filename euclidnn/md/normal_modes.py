"""Normal modes: the model's Hessian by autograd, a reference calculator's by finite
differences (ASE's ``Vibrations``), and the harmonic frequencies of either.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace

import numpy as np
import torch
from ase import Atoms, units

from euclidnn.data.graph import Graph
from euclidnn.models import predict

__all__ = ["NormalModes", "model_hessian", "reference_hessian", "normal_modes"]

# ħ √(eV / (Å² amu)) in eV: turns the square root of a mass-weighted Hessian eigenvalue into
# the energy of the mode (the factor ASE's Vibrations uses)
_HBAR_OMEGA = units._hbar * 1e10 / np.sqrt(units._e * units._amu)


@dataclass(frozen=True)
class NormalModes:
    """Harmonic vibrations of a structure.

    Attributes:
        wavenumbers: ν̃ in cm⁻¹, ascending; imaginary frequencies as negative numbers.
        modes: mass-weighted eigenvectors, one per row, unit norm.

    Shapes: wavenumbers: [n_modes], modes: [n_modes, 3 n_atoms] (n_modes = 3N − 6, or 3N − 5
    for a linear molecule, 3N − 3 for a periodic structure)
    """

    wavenumbers: np.ndarray
    modes: np.ndarray


def model_hessian(model, atoms: Atoms) -> np.ndarray:
    """H_ij = ∂²E / ∂x_i ∂x_j = −∂F_j / ∂x_i of the model at ``atoms``, by autograd through
    :func:`~euclidnn.models.predict` (one backward pass per row; float64 models for accuracy).

    Shapes: → [3 n_atoms, 3 n_atoms] eV/Å²

    >>> from ase.build import molecule
    >>> from euclidnn.models import SchNet, SchNetConfig
    >>> model = SchNet(SchNetConfig(species=(1, 8), num_features=8)).double()
    >>> h = model_hessian(model, molecule("H2O"))
    >>> h.shape, bool(np.allclose(h, h.T))
    ((9, 9), True)
    """
    graph = Graph.from_ase(atoms, r_max=model.cutoff, dtype=model.dtype)
    positions = graph.positions.detach().requires_grad_(True)
    forces = predict(model, replace(graph, positions=positions), training=True).forces
    rows = []
    flat = forces.reshape(-1)
    for k in range(flat.shape[0]):
        (gradient,) = torch.autograd.grad(flat[k], positions, retain_graph=True)
        rows.append(-gradient.reshape(-1))
    hessian = torch.stack(rows).detach().double().cpu().numpy()
    return 0.5 * (hessian + hessian.T)


def reference_hessian(atoms: Atoms, calculator, delta: float = 0.01) -> np.ndarray:
    """Hessian of any ASE calculator by central finite differences of its forces (ASE's
    ``Vibrations``, displacements ± ``delta`` Å), symmetrised.

    Shapes: → [3 n_atoms, 3 n_atoms] eV/Å²
    """
    from ase.vibrations import Vibrations

    atoms = atoms.copy()
    atoms.calc = calculator
    with tempfile.TemporaryDirectory() as folder:
        vibrations = Vibrations(atoms, name=f"{folder}/vib", delta=delta)
        vibrations.run()
        hessian = vibrations.get_vibrations().get_hessian_2d()
    return 0.5 * (hessian + hessian.T)


def normal_modes(hessian: np.ndarray, atoms: Atoms) -> NormalModes:
    r"""Frequencies of the mass-weighted Hessian with rigid motions projected out.

    H̃ = M^{−1/2} H M^{−1/2};  H̃' = (1 − Q Qᵀ) H̃ (1 − Q Qᵀ), Q an orthonormal basis of the
    mass-weighted translations √m_i e_α (and, for a molecule, rotations √m_i e_α × (r_i − r_c));
    ħω_k = ħ √λ_k of the eigenvalues λ_k of H̃' outside span(Q), ν̃ = ω / (2πc).

    >>> from ase import Atoms
    >>> h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    >>> k = 36.0  # eV/Å²: a spring along z
    >>> hessian = np.zeros((6, 6))
    >>> hessian[2, 2] = hessian[5, 5] = k
    >>> hessian[2, 5] = hessian[5, 2] = -k
    >>> modes = normal_modes(hessian, h2)
    >>> modes.wavenumbers.round(0)  # ω = √(2k/m): H₂'s ~4400 cm⁻¹ scale
    array([4407.])
    """
    masses = atoms.get_masses()
    inverse_sqrt = np.repeat(1.0 / np.sqrt(masses), 3)
    weighted = hessian * inverse_sqrt[:, None] * inverse_sqrt[None, :]
    rigid = _rigid_motions(atoms)  # [n_rigid, 3N], orthonormal
    projector = np.eye(len(weighted)) - rigid.T @ rigid
    eigenvalues, vectors = np.linalg.eigh(projector @ weighted @ projector)
    # drop the eigenvectors that lie in the rigid-motion subspace
    overlap = np.linalg.norm(rigid @ vectors, axis=0) if len(rigid) else np.zeros(len(vectors))
    keep = np.argsort(overlap)[: len(weighted) - len(rigid)]
    keep = keep[np.argsort(eigenvalues[keep])]
    energies = _HBAR_OMEGA * np.sign(eigenvalues[keep]) * np.sqrt(np.abs(eigenvalues[keep]))
    return NormalModes(wavenumbers=energies / units.invcm, modes=vectors[:, keep].T)


def _rigid_motions(atoms: Atoms) -> np.ndarray:
    """Orthonormal mass-weighted translations (and rotations, unless periodic)."""
    sqrt_masses = np.sqrt(atoms.get_masses())
    n = len(atoms)
    vectors = []
    for axis in range(3):
        v = np.zeros((n, 3))
        v[:, axis] = sqrt_masses
        vectors.append(v.reshape(-1))
    if not atoms.pbc.any():
        centred = atoms.positions - atoms.get_center_of_mass()
        for axis in range(3):
            e = np.zeros(3)
            e[axis] = 1.0
            vectors.append((np.cross(e, centred) * sqrt_masses[:, None]).reshape(-1))
    basis, singular, _ = np.linalg.svd(np.array(vectors).T, full_matrices=False)
    return basis[:, singular > 1e-6 * singular.max()].T  # a linear molecule has 5
