"""Shared pieces of the active-learning tests: a 13-atom Cu icosahedron labelled by ASE's EMT
(milliseconds a frame), a tiny SchNet committee trained for a few epochs, a loop small enough
to run two iterations in seconds, and an EMT factory that counts the frames it labels."""

from __future__ import annotations

import torch
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron

from euclidnn.learn import LearnConfig
from euclidnn.models import SchNet, SchNetConfig
from euclidnn.train import TrainConfig, data_statistics

TINY = {
    "model": {
        "name": "schnet",
        "settings": {"num_features": 8, "num_interactions": 2, "num_basis": 8, "r_max": 4.0},
    },
    "optimizer": {"batch_size": 4, "lr": 5e-3},
    "run": {"max_epochs": 4, "dtype": "float64"},
}


class CountingEMT:
    """An EMT factory (one calculator per labelled frame) that counts its calls and can stop
    the run, as a kill would, after ``stop_after`` of them."""

    __name__ = "EMT"

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls, self.stop_after = 0, stop_after

    def __call__(self):
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt("killed while labelling")
        self.calls += 1
        return EMT()


def cluster():
    return Icosahedron("Cu", 2)


def train_config() -> TrainConfig:
    return TrainConfig.from_dict(TINY)


def make_model(structures, seed):
    torch.manual_seed(seed)
    stats = data_statistics(structures, 4.0)
    config = SchNetConfig(
        species=stats.species,
        r_max=4.0,
        num_features=8,
        num_interactions=2,
        num_basis=8,
        energy_shifts=stats.energy_shifts,
        energy_scales=stats.energy_scale,
    )
    return SchNet(config).to(torch.float64)


def small_loop(**changes) -> LearnConfig:
    values = dict(
        temperatures=(600.0,),
        committee=2,
        sigma_low=0.01,
        sigma_high=5.0,
        max_labels=30,
        max_iterations=3,
        seed_frames=6,
        first_explore_steps=40,
        explore_steps=80,
        record_interval=5,
        max_selected=3,
        min_spacing=10,
    )
    return LearnConfig(**{**values, **changes})
