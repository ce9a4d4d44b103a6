"""What a model needs to know about its training set before it starts: species, per-species
energy shifts, the energy scale and the mean neighbour count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from euclidnn.data.stats import avg_num_neighbors, force_rms
from euclidnn.data.structure import Structure

__all__ = ["DataStatistics", "data_statistics", "fit_shifts"]


@dataclass(frozen=True)
class DataStatistics:
    """Statistics of a training set that initialise a model.

    Attributes:
        species: atomic numbers present, ascending.
        energy_shifts: per-species energy μ_Z in eV (same order as ``species``).
        energy_scale: eV; the RMS of the force components when the data have forces (NequIP's
            choice), else the standard deviation of the energy residual per atom.
        avg_num_neighbors: mean neighbours within ``r_max`` per atom.
        notes: what was done, for the log (e.g. how a degenerate shift fit was resolved).
    """

    species: tuple[int, ...]
    energy_shifts: tuple[float, ...]
    energy_scale: float
    avg_num_neighbors: float
    notes: tuple[str, ...] = ()


def fit_shifts(
    numbers: Sequence[np.ndarray], values: Sequence[float]
) -> tuple[dict[int, float], str | None]:
    """Per-species values μ_Z with v_s ≈ Σ_Z n_sZ μ_Z, and a note when the fit is degenerate.

    When the compositions do not determine every μ_Z (e.g. every structure is C₂H₆O), the
    plain minimum-norm least-squares solution gives unphysical shifts (H −45 eV, C −15 eV for
    ethanol). Here the fit is regularised towards the mean value per atom v̄: μ = v̄ +
    argmin ‖μ'‖ subject to the least-squares fit of v − n v̄, so that what the data cannot
    tell apart is shared equally between the elements. The fit of the data is the same.

    >>> ethanol = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])
    >>> shifts, note = fit_shifts([ethanol, ethanol], [-90.0, -91.0])
    >>> {z: round(v, 3) for z, v in shifts.items()}, note is not None
    ({1: -10.056, 6: -10.056, 8: -10.056}, True)
    """
    species = sorted({int(z) for n in numbers for z in n})
    column = {z: k for k, z in enumerate(species)}
    counts = np.zeros((len(numbers), len(species)))
    for row, n in enumerate(numbers):
        for z, c in zip(*np.unique(n, return_counts=True)):
            counts[row, column[int(z)]] = c
    values = np.asarray(values, dtype=float)
    mean_per_atom = float(values.sum() / counts.sum())
    residual = values - counts.sum(axis=1) * mean_per_atom
    correction, _, rank, _ = np.linalg.lstsq(counts, residual, rcond=None)
    shifts = mean_per_atom + correction
    note = None
    if rank < len(species):
        formulas = {_formula(n) for n in numbers}
        note = (
            f"the {len(formulas)} composition(s) in the training set ({', '.join(sorted(formulas)[:5])}) "
            f"determine only {rank} of the {len(species)} per-species energies; the rest are "
            f"set to share the mean energy per atom ({mean_per_atom:.4f}) equally"
        )
    return {z: float(shifts[k]) for z, k in column.items()}, note


def data_statistics(
    structures: Sequence[Structure],
    r_max: float,
    property: str | None = None,
    per_atom: bool = False,
    names: Sequence[str] | None = None,
) -> DataStatistics:
    """Species, energy shifts, energy scale and neighbour count of a training set.

    Args:
        structures: the training set.
        r_max: the model's cutoff, Å.
        property: fit the shifts and scale to this scalar property instead of the energy.
        per_atom: the property is intensive (compared with the model's sum over atoms / n).
        names: how an error names each structure (default "training structure i").

    Raises:
        ValueError: no structures, or a structure without the energy (or property), named.
    """
    if not structures:
        raise ValueError("data_statistics: the training set is empty")
    label = property or "energy"
    values = [s.energy if property is None else s.properties.get(property) for s in structures]
    missing = [i for i, v in enumerate(values) if v is None]
    if missing:
        name = names[missing[0]] if names is not None else f"training structure {missing[0]}"
        raise ValueError(
            f"{name}: no {label!r} label ({len(missing)} of {len(values)} training "
            "structures lack it)"
        )
    if any(np.size(v) != 1 for v in values):  # a tensor property: no per-species shift
        species = tuple(sorted({int(z) for s in structures for z in s.numbers}))
        return DataStatistics(
            species=species,
            energy_shifts=(0.0,) * len(species),
            energy_scale=1.0,
            avg_num_neighbors=max(avg_num_neighbors(structures, r_max), 1.0),
            notes=(f"{label} is a tensor: no per-species shift, output scale 1",),
        )
    if per_atom:
        values = [float(v) * s.num_atoms for v, s in zip(values, structures)]
    shifts, note = fit_shifts([s.numbers for s in structures], [float(v) for v in values])
    notes = [note] if note else []
    species = tuple(sorted(shifts))
    if property is None and any(s.forces is not None for s in structures):
        scale = force_rms(structures)
        notes.append(f"energy scale = RMS force component of the training set, {scale:.4f} eV/Å")
    else:
        residual = [
            (v - sum(shifts[int(z)] for z in s.numbers)) / s.num_atoms
            for v, s in zip(values, structures)
        ]
        scale = float(np.std(residual)) if len(residual) > 1 else 1.0
        notes.append(f"output scale = std of the {label} residual per atom, {scale:.4g}")
    if not scale > 0:
        scale = 1.0
        notes.append("energy scale of the data is 0; using 1 eV")
    neighbours = avg_num_neighbors(structures, r_max)
    return DataStatistics(
        species=species,
        energy_shifts=tuple(shifts[z] for z in species),
        energy_scale=scale,
        avg_num_neighbors=max(neighbours, 1.0),
        notes=tuple(notes),
    )


def _formula(numbers: np.ndarray) -> str:
    from ase.data import chemical_symbols
    from ase.formula import Formula

    return Formula("".join(chemical_symbols[z] for z in numbers)).format("hill")
