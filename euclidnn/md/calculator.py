"""The ASE calculator of a euclidnn model: energy, forces and stress through ``predict()``.

The neighbour list is built at ``r_max + skin`` and kept while no atom has moved more than
``skin / 2`` since it was built (then no pair can have come from beyond ``r_max + skin`` to
within ``r_max``). Each step keeps the listed pairs closer than ``r_max``, so the model sees
exactly the edges a fresh neighbour list would give, in the same order.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator as AseCalculator
from ase.calculators.calculator import all_changes
from ase.stress import full_3x3_to_voigt_6_stress
from torch import nn

from euclidnn.data.geometry_checks import check_positions
from euclidnn.data.graph import Graph
from euclidnn.data.neighbors import neighbor_list
from euclidnn.models import load_model, predict

__all__ = ["Calculator", "MIN_DISTANCE", "check_device"]

#: Atoms closer than this (Å) are reported as on top of each other.
MIN_DISTANCE = 0.1


class Calculator(AseCalculator):
    r"""ASE calculator for a euclidnn potential (a model or a ``.safetensors`` file).

    E = model(graph),  F_i = −∂E/∂r_i,  σ = (1/V) ∂E/∂ε  (ASE's sign: positive = tensile),
    all from :func:`~euclidnn.models.predict`. ASE's float64 positions are converted to the
    model's dtype (``dtype`` casts the model first).

    Args:
        model: a model (``model(graph) -> energy [n_graphs]`` with ``config.r_max`` and
            ``config.species``) or the path of a file written by
            :func:`~euclidnn.models.save_model`.
        dtype: run a copy of the model in this dtype (default: the model's own).
        device: run the model there (default: where its parameters are); checked by
            :func:`check_device`.
        skin: extra radius of the kept neighbour list, Å (0 rebuilds it every call).
        with_stress: compute the stress in every evaluation of a 3D-periodic structure, not
            only when it is asked for: constant-pressure MD asks for the forces and then the
            stress of each new configuration, and one evaluation of the model serves both
            (the stress costs little beside the forces; a second evaluation would double the
            step). Off by default, where the forces alone take a faster path.

    Attributes:
        rebuilds: how many times the neighbour list was built.

    >>> from ase.build import molecule
    >>> from euclidnn.models import SchNet, SchNetConfig
    >>> atoms = molecule("H2O")
    >>> atoms.calc = Calculator(SchNet(SchNetConfig(species=(1, 8), num_features=8)))
    >>> atoms.get_forces().shape, atoms.calc.rebuilds
    ((3, 3), 1)
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self,
        model: nn.Module | str | os.PathLike,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        skin: float = 1.0,
        with_stress: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if device is not None:
            device = check_device(device)
        if isinstance(model, (str, os.PathLike)):
            model = load_model(Path(model))
        elif dtype is not None or device is not None:
            model = copy.deepcopy(model)  # Module.to casts in place: leave the caller's alone
        if dtype is not None:
            model = model.to(dtype=dtype)
        if device is not None:
            model = model.to(device)
        if skin < 0:
            raise ValueError(f"Calculator: skin must be ≥ 0 Å, got {skin}")
        self.model = model
        self.r_max = model.cutoff
        self.species = model.species
        self.skin = float(skin)
        self.with_stress = bool(with_stress)
        self.dtype, self.device = model.dtype, model.device
        self.rebuilds = 0
        self._list = None  # (positions, cell, pbc, numbers, edge_src, edge_dst, edge_shift)
        self._mask = None  # which listed pairs are edges (closer than r_max) in self._graph
        self._graph = None  # the last graph
        self._topology: dict[str, torch.Tensor] = {}

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """What changed since the last calculation: ASE's ``compare_atoms`` restricted to what
        the model reads (positions, numbers, cell, pbc), with exact comparisons — ASE's own
        check (``allclose`` on every array) cost a third of an MD step of a small molecule."""
        if self.atoms is None:
            return list(all_changes)
        changes = []
        if not np.array_equal(self.atoms.positions, atoms.positions):
            changes.append("positions")
        if not np.array_equal(self.atoms.numbers, atoms.numbers):
            changes.append("numbers")
        if not np.array_equal(self.atoms.cell.array, atoms.cell.array):
            changes.append("cell")
        if not np.array_equal(self.atoms.pbc, atoms.pbc):
            changes.append("pbc")
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Energy and forces (and stress when asked for) of ``atoms``; ASE calls this."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = "stress" in properties
        if want_stress and not atoms.pbc.all():
            raise ValueError(f"stress: {atoms.get_chemical_formula()} is not periodic in 3D")
        want_stress = want_stress or (self.with_stress and atoms.pbc.all())
        graph = self.graph(atoms)
        out = predict(self.model, graph, forces=True, stress=want_stress)
        energy = float(out.energy[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out.forces.detach().cpu().double().numpy(),
        }
        if want_stress:
            stress = out.stress[0].detach().cpu().double().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)

    def graph(self, atoms) -> Graph:
        """The model input for ``atoms``: edges closer than ``r_max`` from the kept list.

        Raises ``ValueError`` for elements the model does not know, NaN or infinite positions
        (a run that blew up) and atoms on top of each other (closer than :data:`MIN_DISTANCE`).
        """
        positions = np.asarray(atoms.positions, dtype=np.float64)
        numbers = np.asarray(atoms.numbers)
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if self._needs_rebuild(positions, cell, pbc, numbers):
            self._build(atoms, positions, cell, pbc, numbers)
        _, cell, _, _, src, dst, shift = self._list
        vectors = positions[src] - positions[dst] + shift @ cell  # [n_listed, 3]
        lengths = np.sqrt((vectors * vectors).sum(-1))
        if len(lengths) and lengths.min() < MIN_DISTANCE:
            check_positions(atoms, atoms.get_chemical_formula())  # raises, naming the atoms
            raise ValueError(f"{atoms.get_chemical_formula()}: atoms on top of each other")
        mask = lengths < self.r_max
        positions = torch.tensor(positions, dtype=self.dtype, device=self.device)
        if self._graph is not None and np.array_equal(mask, self._mask):
            # the same edges: the same edge tensors and derived store (Graph.with_positions),
            # so the edge pairs and the kernels' edge orders are computed once, not per step
            self._graph = self._graph.with_positions(positions)
            return self._graph
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)  # noqa: E731
        self._mask = mask
        self._graph = Graph(
            positions=positions,
            numbers=self._topology["numbers"],
            cell=self._topology["cell"],
            pbc=self._topology["pbc"],
            batch=self._topology["batch"],
            edge_src=as_tensor(src[mask]),
            edge_dst=as_tensor(dst[mask]),
            edge_shift=as_tensor(shift[mask]).to(self.dtype),
            num_atoms=self._topology["num_atoms"],
        )
        return self._graph

    def _needs_rebuild(self, positions, cell, pbc, numbers) -> bool:
        if self._list is None or self.skin == 0:
            return True
        old_positions, old_cell, old_pbc, old_numbers = self._list[:4]
        if (
            len(numbers) != len(old_numbers)
            or not np.array_equal(numbers, old_numbers)
            or not np.array_equal(pbc, old_pbc)
            or (pbc.any() and not np.array_equal(cell, old_cell))
        ):
            return True
        displacement = np.sqrt(((positions - old_positions) ** 2).sum(-1)).max(initial=0.0)
        return not displacement <= 0.5 * self.skin  # NaN too: _build reports it

    def _build(self, atoms, positions, cell, pbc, numbers) -> None:
        unknown = sorted(set(numbers.tolist()) - set(self.species))
        if unknown:
            raise ValueError(
                f"{atoms.get_chemical_formula()}: elements {unknown} (atomic numbers) are not "
                f"known to the model, which knows {list(self.species)}"
            )
        check_positions(atoms, atoms.get_chemical_formula())
        src, dst, shift = neighbor_list(positions, cell, pbc, self.r_max + self.skin)
        self._list = (positions.copy(), cell.copy(), pbc.copy(), numbers.copy(), src, dst, shift)
        n, device = len(numbers), self.device
        self._topology = {  # tensors that change only with a rebuild
            "numbers": torch.tensor(numbers, dtype=torch.int64, device=device),
            "cell": torch.tensor(
                cell if pbc.any() else np.zeros((3, 3)), dtype=self.dtype, device=device
            ).reshape(1, 3, 3),
            "pbc": torch.tensor(pbc, device=device).reshape(1, 3),
            "batch": torch.zeros(n, dtype=torch.int64, device=device),
            "num_atoms": torch.tensor([n], device=device),
        }
        self._graph = None
        self.rebuilds += 1


def check_device(device: torch.device | str) -> torch.device:
    """``device`` as a ``torch.device`` that this PyTorch can use; ``ValueError`` naming the
    devices it has otherwise (a misspelt name, CUDA on a CPU-only build or machine, a GPU
    index beyond those present).

    >>> check_device("cpu")
    device(type='cpu')
    >>> check_device("banana")
    Traceback (most recent call last):
    ...
    ValueError: device 'banana': not a device name; use cpu or cuda, cuda:0, … (for a GPU)
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device {device!r}: not a device name; use cpu or cuda, cuda:0, … (for a GPU)"
        ) from None
    if parsed.type == "cpu":
        return parsed
    available = _available_devices()
    if parsed.type == "cuda" and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if parsed.index is None or parsed.index < count:
            return parsed
        raise ValueError(f"device {device!r}: this machine has {count} GPU(s): use {available}")
    if parsed.type == "mps" and torch.backends.mps.is_available():
        return parsed
    if parsed.type == "cuda":
        why = "this PyTorch is built without CUDA" if torch.version.cuda is None else "no GPU found"
    elif parsed.type == "mps":
        why = "no Apple GPU (MPS) here"
    else:
        why = f"euclidnn does not run on {parsed.type} devices"
    raise ValueError(f"device {device!r}: not available ({why}); use {available}")


def _available_devices() -> str:
    """The devices this PyTorch can use, as a user would name them."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{k}" for k in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return " or ".join(names)
