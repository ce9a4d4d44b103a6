"""Files and names → objects: YAML configs, data files and model names (the CLI's one table).

The only place that maps a name (``"nequip"``) to a class, and a file to a config.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from euclidnn.data.datasets import DATASETS, load_dataset
from euclidnn.data.readers import read
from euclidnn.data.structure import Structure
from euclidnn.files import write_text  # the CLI's one atomic writer, here for its commands
from euclidnn.models import (
    Allegro,
    AllegroConfig,
    NequIP,
    NequIPConfig,
    Potential,
    SchNet,
    SchNetConfig,
    build_model,
)
from euclidnn.train.config import TrainConfig
from euclidnn.train.stats import DataStatistics

#: model name → (class, config class, the training defaults that differ from the config's)
MODELS: dict[str, tuple[type[nn.Module], type, dict[str, Any]]] = {
    "nequip": (
        NequIP,
        NequIPConfig,
        {"lmax": 1, "num_features": 32, "num_layers": 3, "r_max": 4.0},
    ),
    "schnet": (SchNet, SchNetConfig, {"num_features": 64, "num_interactions": 3, "r_max": 5.0}),
    "allegro": (
        Allegro,
        AllegroConfig,
        {"lmax": 1, "num_tensor_features": 16, "num_layers": 2, "latent_dim": 64, "r_max": 5.0},
    ),
}
#: config fields fitted on the training set, never set by hand
FITTED = ("species", "energy_shifts", "energy_scales", "avg_num_neighbors")


def load_config(path: str | os.PathLike | None) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (safe loader; ``None`` → defaults), with the
    model's settings checked against its config class. Errors name the file and the key."""
    if path is None:
        return check_model_settings(TrainConfig())
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    try:
        return check_model_settings(TrainConfig.from_dict(values))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def check_model_settings(config: TrainConfig) -> TrainConfig:
    """Every ``model.settings`` key must be a field of the chosen model's config (not a fitted
    one); the error lists the allowed keys."""
    _, config_class, _ = MODELS[config.model.name]
    allowed = [f.name for f in dataclasses.fields(config_class) if f.name not in FITTED]
    for key in config.model.settings:
        if key not in allowed:
            extra = " (it is fitted on the training set)" if key in FITTED else ""
            raise ValueError(
                f"model.settings.{key}: not a setting of {config.model.name}{extra}; "
                f"allowed: {', '.join(allowed)}"
            )
    return config


def model_settings(config: TrainConfig) -> dict[str, Any]:
    """The model's hyperparameters in full: its config's defaults, then the training
    defaults, then the config's settings (the fitted fields excepted)."""
    _, config_class, defaults = MODELS[config.model.name]
    fields = {f.name: f.default for f in dataclasses.fields(config_class) if f.name not in FITTED}
    return {**fields, **defaults, **config.model.settings}


def new_model(config: TrainConfig, stats: DataStatistics) -> Potential:
    """The model the config names, initialised with the training set's statistics."""
    model_class, config_class, _ = MODELS[config.model.name]
    fields = {
        **model_settings(config),
        "species": stats.species,
        "energy_shifts": stats.energy_shifts,
        "energy_scales": stats.energy_scale,
    }
    if "avg_num_neighbors" in {f.name for f in dataclasses.fields(config_class)}:
        fields["avg_num_neighbors"] = stats.avg_num_neighbors
    if config.model.head is not None:
        head = {"trunk": fields, "irreps_out": config.model.head}
        return build_model("TensorHead", head, where="model.settings")
    return build_model(model_class.__name__, fields, where="model.settings")


def add_read_arguments(parser: argparse.ArgumentParser) -> None:
    """The unit and key options of :func:`euclidnn.data.read`."""
    group = parser.add_argument_group("reading the data (units are converted to eV and Å)")
    group.add_argument("--index", default=":", help="frames to use, e.g. ':1250' or '1500:'")
    group.add_argument("--format", default=None, help="ASE format when the extension is unclear")
    for name, example in (
        ("energy-unit", "kcal/mol (MD17), Hartree, kJ/mol; default: file metadata, else eV"),
        ("length-unit", "Bohr; default: file metadata, else Å"),
        ("forces-unit", "default: energy-unit/length-unit"),
        ("stress-unit", "default: energy-unit/length-unit³"),
        ("energy-key", "label name in the file (default 'energy')"),
        ("forces-key", "label name in the file (default 'forces')"),
        ("stress-key", "label name in the file (default 'stress')"),
    ):
        group.add_argument(f"--{name}", default=None, help=example)


def read_options(args: argparse.Namespace, config: TrainConfig | None = None) -> dict[str, Any]:
    """Reader keyword arguments: command line first, then the config's data section."""
    options = {}
    for key in ("energy_unit", "length_unit", "forces_unit", "stress_unit"):
        options[key] = getattr(args, key) or (getattr(config.data, key) if config else None)
    for key in ("energy_key", "forces_key", "stress_key"):
        options[key] = getattr(args, key) or (getattr(config.data, key) if config else None)
    options["format"] = args.format
    return options


def read_data(
    source: str, index: str, options: dict[str, Any]
) -> tuple[list[Structure], list[str]]:
    """Structures of a file (or of a shipped data set, by name) and a name for each frame."""
    path = Path(source)
    if not path.exists() and source in DATASETS:
        structures = load_dataset(source)
        path = DATASETS[source].path
        if any(v is not None for k, v in options.items() if k != "format"):
            raise ValueError(f"{source}: a shipped data set is in eV and Å; drop the unit options")
    else:
        structures = read(path, **options)
    frames = list(range(len(structures)))
    try:
        chosen = frames[_slice(index)]
    except ValueError as err:
        raise ValueError(f"--index {index!r}: {err}") from None
    chosen = chosen if isinstance(chosen, list) else [chosen]
    if not chosen:
        raise ValueError(f"{path}: --index {index!r} selects no frames of {len(structures)}")
    return [structures[i] for i in chosen], [f"{path} frame {i}" for i in chosen]


def _slice(index: str) -> slice | int:
    if ":" not in index:
        return int(index)
    parts = [int(p) if p.strip() else None for p in index.split(":")]
    if len(parts) > 3:
        raise ValueError("expected start:stop[:step]")
    return slice(*parts)


def write_yaml(path: Path, values: dict[str, Any]) -> None:
    """Write ``values`` as YAML atomically."""
    write_text(path, yaml.safe_dump(values, sort_keys=False))
