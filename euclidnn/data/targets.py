"""Targets: reference labels of a batch, kept apart from the model input (Graph)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.utils._pytree as pytree
from torch import Tensor

from .structure import Structure

__all__ = ["Targets"]


@dataclass(frozen=True)
class Targets:
    """Reference labels of one structure or a batch, aligned with a :class:`Graph`.

    A label is either present for every structure of a batch or ``None``; collating
    structures with and without a label is an error (it would silently drop data).

    Shapes:
        energy: [n_graphs] eV | None
        forces: [n_atoms, 3] eV/Å | None
        stress: [n_graphs, 3, 3] eV/Å³ | None
        properties: name → [n_graphs, ...] per-structure labels (units as documented by the
            reader, e.g. dipole e·Å)
        atom_properties: name → [n_atoms, ...] per-atom labels

    >>> s = Structure([1, 1], [[0, 0, 0], [0, 0, 0.74]], energy=-1.0, forces=np.zeros((2, 3)))
    >>> t = Targets.collate([Targets.from_structure(s)] * 2)
    >>> t.energy.shape, t.forces.shape, t.stress
    (torch.Size([2]), torch.Size([4, 3]), None)
    """

    energy: Tensor | None = None
    forces: Tensor | None = None
    stress: Tensor | None = None
    properties: dict[str, Tensor] = field(default_factory=dict)
    atom_properties: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def from_structure(cls, structure: Structure, dtype: torch.dtype | None = None) -> Targets:
        """Labels of one structure (``dtype`` defaults to ``torch.get_default_dtype()``)."""
        dtype = dtype or torch.get_default_dtype()

        def tensor(value, shape=None):
            if value is None:
                return None
            array = np.asarray(value)
            t = torch.tensor(array, dtype=dtype if array.dtype.kind in "fc" else None)
            return t if shape is None else t.reshape(shape)

        return cls(
            energy=tensor(structure.energy, (1,)),
            forces=tensor(structure.forces),
            stress=tensor(structure.stress, (1, 3, 3)),
            properties={k: tensor(v)[None] for k, v in structure.properties.items()},
            atom_properties={k: tensor(v) for k, v in structure.atom_properties.items()},
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """Copy on ``device``; floating-point tensors cast to ``dtype``."""

        def move(t):
            if t is None:
                return None
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return Targets(
            energy=move(self.energy),
            forces=move(self.forces),
            stress=move(self.stress),
            properties={k: move(v) for k, v in self.properties.items()},
            atom_properties={k: move(v) for k, v in self.atom_properties.items()},
        )

    @staticmethod
    def collate(targets: Sequence[Targets]) -> Targets:
        """Concatenate labels of several structures (or batches) in order.

        Raises:
            ValueError: a label present for some structures and missing for others.
        """
        if len(targets) == 0:
            raise ValueError("Targets.collate: need at least one Targets")
        if len(targets) == 1:
            return targets[0]

        def cat(name, values):
            missing = [i for i, v in enumerate(values) if v is None]
            if len(missing) == len(values):
                return None
            if missing:
                raise ValueError(
                    f"{name}: present for some structures and missing for others "
                    f"(missing in batch items {missing[:10]})"
                )
            return torch.cat(values)

        def cat_dict(name, dicts):
            keys = set(dicts[0])
            for i, d in enumerate(dicts):
                if set(d) != keys:
                    raise ValueError(
                        f"{name}: keys differ between batch items 0 and {i}: "
                        f"{sorted(keys)} vs {sorted(d)}"
                    )
            return {k: torch.cat([d[k] for d in dicts]) for k in dicts[0]}

        return Targets(
            **{
                f.name: cat(f.name, [getattr(t, f.name) for t in targets])
                for f in fields(Targets)
                if f.name in ("energy", "forces", "stress")
            },
            properties=cat_dict("properties", [t.properties for t in targets]),
            atom_properties=cat_dict("atom_properties", [t.atom_properties for t in targets]),
        )


pytree.register_dataclass(Targets, serialized_type_name="euclidnn.data.Targets")
