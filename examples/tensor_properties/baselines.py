"""The two baselines of compare.py: an MLP on raw coordinates (made symmetric by rotated copies
of the data, if at all) and an invariant model whose tensors are built from atomic scalars.

Neither is a euclidnn model (they read padded coordinate arrays, not graphs), so they get the
smallest possible Adam loop here; the equivariant TensorHead is trained by euclidnn.train.fit.
"""

import numpy as np
import torch
from torch import nn

SPECIES = (1, 6, 7, 8, 9)  # H C N O F: what the data hold
MAX_ATOMS = 6
NUM_GAUSSIANS, R_MAX = 16, 4.0


def rotate(y: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """A dipole [..., 3] → R μ; a polarizability [..., 3, 3] → R α Rᵀ."""
    if y.shape[-1] == 3 and (y.dim() == 1 or y.shape[-2] != 3):
        return y @ rotation.T
    return rotation @ y @ rotation.T


def symmetric(six: torch.Tensor) -> torch.Tensor:
    """(xx, yy, zz, xy, xz, yz) → symmetric 3×3. Shapes: [..., 6] → [..., 3, 3]"""
    xx, yy, zz, xy, xz, yz = six.unbind(-1)
    rows = [torch.stack(r, -1) for r in ((xx, xy, xz), (xy, yy, yz), (xz, yz, zz))]
    return torch.stack(rows, -2)


def one_hot(numbers: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.array([[z == s for s in SPECIES] for z in numbers]), dtype=torch.float64)


class CoordinateMLP(nn.Module):
    """y = MLP([one-hot(Z_1), r_1 − r̄, …, one-hot(Z_6), r_6 − r̄]) (zero-padded slots): knows
    nothing of rotations except what rotated copies of the data teach it."""

    def __init__(self, tensor: bool, width: int = 128) -> None:
        super().__init__()
        self.tensor = tensor
        n_in = MAX_ATOMS * (len(SPECIES) + 3)
        self.net = nn.Sequential(
            nn.Linear(n_in, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, 6 if tensor else 3),
        )  # fmt: skip

    def forward(self, centred: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Shapes: centred [B, MAX_ATOMS, 3] Å, species [B, MAX_ATOMS, len(SPECIES)] → [B, 3] or
        [B, 3, 3]"""
        y = self.net(torch.cat([species, centred], -1).flatten(1))
        return symmetric(y) if self.tensor else y


def descriptors(centred: np.ndarray, numbers: np.ndarray) -> torch.Tensor:
    """Invariant atom descriptors: own species one-hot and, per neighbour species, a Gaussian
    expansion Σ_j exp(−γ (r_ij − μ_k)²) f_cut(r_ij) of the distances. Shapes: → [n, 5 + 5·16]"""
    r = torch.as_tensor(centred)
    distance = torch.cdist(r, r)  # [n, n]
    mu = torch.linspace(0.5, R_MAX, NUM_GAUSSIANS, dtype=r.dtype)
    gauss = torch.exp(-4.0 * (distance[..., None] - mu) ** 2)  # [n, n, K]
    cut = 0.5 * (torch.cos(torch.pi * distance / R_MAX) + 1) * (distance < R_MAX)
    cut = cut * (1 - torch.eye(len(r), dtype=r.dtype))
    species = one_hot(numbers)  # [n, S]
    per_species = torch.einsum("ijk,ij,js->isk", gauss, cut, species).flatten(1)
    return torch.cat([species, per_species], -1)


class InvariantModel(nn.Module):
    r"""Tensors from invariant atomic scalars: μ = Σ_i (q_i − q̄) r_i (charges, Σ = 0) or
    α = Σ_i (a_i I + b_i d_i d_iᵀ), d_i = r_i − r̄. Exactly equivariant, but μ has no atomic
    dipoles (only charge displacements along atom positions) and α no bond anisotropy beyond
    the d_i d_iᵀ of each atom's own position (a linear or planar arrangement of the atoms
    limits its shape)."""

    def __init__(self, tensor: bool, width: int = 64) -> None:
        super().__init__()
        self.tensor = tensor
        n_in = len(SPECIES) * (1 + NUM_GAUSSIANS)
        self.net = nn.Sequential(
            nn.Linear(n_in, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, 2 if tensor else 1),
        )  # fmt: skip

    def forward(self, features, centred, molecule, num_molecules):
        """Shapes: features [n_atoms, F], centred [n_atoms, 3], molecule [n_atoms] → [B, ...]"""
        out = self.net(features)
        counts = torch.zeros(num_molecules, dtype=out.dtype).index_add(
            0, molecule, torch.ones_like(out[:, 0])
        )
        if not self.tensor:
            q = out[:, 0]
            mean = torch.zeros(num_molecules, dtype=q.dtype).index_add(0, molecule, q) / counts
            atom = (q - mean[molecule])[:, None] * centred
            return torch.zeros(num_molecules, 3, dtype=q.dtype).index_add(0, molecule, atom)
        eye = torch.eye(3, dtype=out.dtype)
        outer = centred[:, :, None] * centred[:, None, :]
        atom = out[:, 0, None, None] * eye + out[:, 1, None, None] * outer
        return torch.zeros(num_molecules, 3, 3, dtype=out.dtype).index_add(0, molecule, atom)


def adam_fit(model, loss_of_batch, num_samples, steps, batch_size=32, lr=2e-3, seed=0):
    """Minimise the mean of ``loss_of_batch(model, indices)`` over random minibatches; the
    learning rate decays by 10 over the run."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.1 ** (1 / steps))
    for _ in range(steps):
        indices = torch.randint(num_samples, (min(batch_size, num_samples),), generator=generator)
        optimizer.zero_grad()
        loss_of_batch(model, indices).backward()
        optimizer.step()
        schedule.step()
    return model
