"""A committee of K potentials: its mean prediction, its disagreement, its training, its MD.

The committee's uncertainty of a structure is the spread of its members' predictions. With
K members predicting forces F_kiα (member k, atom i, component α) and energies E_k:

    F̄_iα = (1/K) Σ_k F_kiα
    σ_i  = sqrt( Σ_α (1/K) Σ_k (F_kiα − F̄_iα)² )     per-atom force disagreement, eV/Å
    σ_F  = max_i σ_i                                  per structure, eV/Å
    σ_E  = sqrt( (1/K) Σ_k (E_k − Ē)² )               per structure, eV

σ_i is the norm over x, y, z of the per-component standard deviations (population
standard deviation, 1/K, as DP-GEN's model deviation), so it is rotation invariant. σ_F
takes the worst atom: an MD step fails through its worst atom, not through the average.

Members differ by their seed: the initial weights and the order of the training data
(:func:`~euclidnn.train.epoch_order`) and the validation frames held out. Each is trained
with :func:`~euclidnn.train.fit` in its own run folder and can start from the weights of an
earlier committee (a warm start).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator as AseCalculator
from ase.calculators.calculator import all_changes
from torch import Tensor, nn

from euclidnn.data.graph import Graph
from euclidnn.data.structure import Structure
from euclidnn.md.calculator import Calculator
from euclidnn.models import load_model, predict
from euclidnn.train import TrainConfig, fit

__all__ = [
    "CommitteePrediction",
    "committee_statistics",
    "committee_predict",
    "train_committee",
    "load_committee",
    "CommitteeCalculator",
    "MODEL_FILE",
    "per_frame_force_error",
]

#: the file of a member in its run folder (what :func:`~euclidnn.train.fit` writes)
MODEL_FILE = "model.safetensors"


@dataclass(frozen=True)
class CommitteePrediction:
    """The committee's mean prediction and its disagreement (definitions: module docstring).

    Shapes:
        energy: [n_graphs] eV, mean over members
        forces: [n_atoms, 3] eV/Å, mean over members
        energy_std: [n_graphs] eV, σ_E
        atom_sigma: [n_atoms] eV/Å, σ_i
        sigma_forces: [n_graphs] eV/Å, σ_F = max over the graph's atoms of σ_i
    """

    energy: Tensor
    forces: Tensor
    energy_std: Tensor
    atom_sigma: Tensor
    sigma_forces: Tensor


def committee_statistics(energies: Tensor, forces: Tensor, batch: Tensor) -> CommitteePrediction:
    """Mean and spread of K members' predictions.

    Shapes: energies: [K, n_graphs] eV, forces: [K, n_atoms, 3] eV/Å, batch: [n_atoms]

    >>> f = torch.tensor([[[1.0, 0.0, 0.0]], [[-1.0, 0.0, 0.0]]])  # two members, one atom
    >>> p = committee_statistics(torch.tensor([[1.0], [3.0]]), f, torch.tensor([0]))
    >>> p.sigma_forces.tolist(), p.energy.tolist(), p.energy_std.tolist()
    ([1.0], [2.0], [1.0])
    """
    mean_forces = forces.mean(0)  # [n_atoms, 3]
    variance = ((forces - mean_forces) ** 2).mean(0)  # [n_atoms, 3], population (1/K)
    atom_sigma = variance.sum(-1).sqrt()  # [n_atoms]
    num_graphs = energies.shape[1]
    sigma_forces = torch.zeros(num_graphs, dtype=forces.dtype, device=forces.device)
    sigma_forces = sigma_forces.scatter_reduce(0, batch, atom_sigma, "amax", include_self=True)
    return CommitteePrediction(
        energy=energies.mean(0),
        forces=mean_forces,
        energy_std=energies.std(0, unbiased=False),
        atom_sigma=atom_sigma,
        sigma_forces=sigma_forces,
    )


def committee_predict(models: Sequence[nn.Module], graph: Graph) -> CommitteePrediction:
    """Predict with every member on ``graph`` and combine (:func:`committee_statistics`).

    The members share the graph, so they must share the cutoff (a committee is one config
    trained K times).
    """
    if len(models) < 2:
        raise ValueError(f"a committee needs at least 2 models, got {len(models)}")
    cutoffs = {float(m.cutoff) for m in models}
    if len(cutoffs) > 1:
        raise ValueError(f"committee members have different cutoffs {sorted(cutoffs)} Å")
    outs = [predict(m, graph, forces=True) for m in models]
    energies = torch.stack([o.energy.detach() for o in outs])  # [K, n_graphs]
    forces = torch.stack([o.forces.detach() for o in outs])  # [K, n_atoms, 3]
    return committee_statistics(energies, forces, graph.batch)


def load_committee(paths: Sequence[str | os.PathLike]) -> list[nn.Module]:
    """The models of a committee from their files, or from one folder that holds member
    folders (``*/model.safetensors``, sorted by name)."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        paths = sorted(folder.glob(f"*/{MODEL_FILE}")) or sorted(folder.glob("*.safetensors"))
        if not paths:
            raise FileNotFoundError(f"{folder}: no committee members (*/{MODEL_FILE}) in it")
    models = [load_model(p) for p in paths]
    if len(models) < 2:
        raise ValueError(f"a committee needs at least 2 models, got {len(models)}")
    for model in models:
        model.eval()
    return models


def _member_split(n: int, seed: int) -> tuple[list[int], list[int]]:
    """(training, validation) indices of one member: a tenth (at least one) held out,
    chosen by the member's seed."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator).tolist()
    n_valid = max(1, n // 10) if n > 1 else 0
    return order[n_valid:], order[:n_valid] or order[:1]


def train_committee(
    structures: Sequence[Structure],
    config: TrainConfig,
    make_model: Callable[[Sequence[Structure], int], nn.Module],
    out: str | os.PathLike,
    size: int = 4,
    *,
    previous: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Train ``size`` members on ``structures``, member k in ``out/member-k`` with seed
    ``config.run.seed + k``; returns their model files.

    Args:
        structures: labelled structures (eV, Å).
        config: the training settings of every member (its seed is shifted per member).
        make_model: ``make_model(training_set, seed)``, a new model for a training set
            (species and energy shifts fitted on it) whose weights are drawn from ``seed``
            (the member's), so that members start from different weights.
        out: folder of the member run folders.
        previous: a folder of an earlier committee (``member-k/model.safetensors``): member k
            starts from its weights (a warm start) instead of ``make_model``.
        log: where one line per member goes.

    A member whose folder holds ``trained.json`` (written when its fit returned) is kept as
    it is; one whose folder holds a ``last.ckpt`` without it (a killed run) is resumed from
    that checkpoint exactly (``fit(..., resume=True)``).
    """
    out = Path(out)
    for k in range(size):
        warm = Path(previous) / f"member-{k}" / MODEL_FILE if previous is not None else None
        _train_member(structures, config, make_model, out / f"member-{k}", k, warm, log)
    return [out / f"member-{k}" / MODEL_FILE for k in range(size)]


def _train_member(structures, config, make_model, folder: Path, k: int, warm, log) -> None:
    """Member ``k`` in ``folder``: kept when ``trained.json`` says it finished, resumed from
    ``last.ckpt`` when a killed run left one, else trained from ``warm`` or a new model."""
    import json

    from euclidnn.files import write_text

    done = folder / "trained.json"
    if done.is_file():
        return
    seed = config.run.seed + k
    member = config.replace(run={"seed": seed})
    train, valid = _member_split(len(structures), seed)
    start = "warm" if warm is not None and warm.is_file() else "new"
    if start == "warm":
        model = load_model(warm)
    else:
        model = make_model([structures[i] for i in train], seed)
    model = model.to(dtype=getattr(torch, member.run.dtype))
    resume = (folder / "last.ckpt").is_file()
    result = fit(
        model,
        [structures[i] for i in train],
        [structures[i] for i in valid],
        member,
        folder,
        resume=resume,
        progress=False,
        log=lambda message: None,
    )
    rmse = result.best_metrics.get("forces_rmse_meV_per_A", float("nan"))
    record = {"start": start, "resumed": resume, "train": len(train), "valid": len(valid)}
    record |= {"epochs": result.epochs, "seconds": result.seconds, "valid_forces_rmse": rmse}
    write_text(done, json.dumps(record, indent=1) + "\n")
    log(f"  member {k} ({start}): {result.epochs:.0f} epochs, valid force RMSE {rmse:.1f} meV/Å")


class CommitteeCalculator(AseCalculator):
    """ASE calculator that moves atoms on the committee's mean energy and forces and records
    the committee's disagreement at every calculation.

    ``results`` holds ``energy``, ``forces`` (means), and ``sigma_forces`` (σ_F, eV/Å),
    ``energy_std`` (σ_E, eV) and ``atom_sigma`` (σ_i, [n_atoms] eV/Å); every σ_F computed is
    appended to ``sigmas``. The neighbour list is kept between steps as by
    :class:`euclidnn.md.Calculator`, whose graph this calculator reuses.

    >>> from ase.build import molecule
    >>> from euclidnn.models import SchNet, SchNetConfig
    >>> members = [SchNet(SchNetConfig(species=(1, 8), num_features=8)) for _ in range(2)]
    >>> atoms = molecule("H2O")
    >>> atoms.calc = CommitteeCalculator(members)
    >>> atoms.get_forces().shape, len(atoms.calc.sigmas), atoms.calc.results["sigma_forces"] > 0
    ((3, 3), 1, True)
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, models: Sequence[nn.Module], *, skin: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if len(models) < 2:
            raise ValueError(f"a committee needs at least 2 models, got {len(models)}")
        self.models = list(models)
        self._graphs = Calculator(self.models[0], skin=skin)  # builds the graphs
        self.sigmas: list[float] = []

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Mean energy and forces of ``atoms`` and the committee's σ; ASE calls this."""
        super().calculate(atoms, properties, system_changes)
        out = committee_predict(self.models, self._graphs.graph(self.atoms))
        energy = float(out.energy[0])
        sigma = float(out.sigma_forces[0])
        self.sigmas.append(sigma)
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out.forces.cpu().double().numpy(),
            "sigma_forces": sigma,
            "energy_std": float(out.energy_std[0]),
            "atom_sigma": out.atom_sigma.cpu().double().numpy(),
        }


def per_frame_force_error(predicted: np.ndarray, reference: np.ndarray, batch: np.ndarray):
    """max over a frame's atoms of |F_pred,i − F_ref,i| (eV/Å): the true error that σ_F
    estimates. Shapes: predicted, reference: [n_atoms, 3], batch: [n_atoms] → [n_graphs]

    >>> per_frame_force_error(np.zeros((2, 3)), np.array([[3.0, 4, 0], [1, 0, 0]]), np.array([0, 1]))
    array([5., 1.])
    """
    errors = np.linalg.norm(predicted - reference, axis=-1)
    worst = np.zeros(int(batch.max()) + 1 if len(batch) else 0)
    np.maximum.at(worst, batch, errors)
    return worst
