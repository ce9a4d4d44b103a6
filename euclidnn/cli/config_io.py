"""Files and names → objects: YAML configs, data files and model names (the CLI's one table).

The only place that maps a name (``"nequip"``) to a class, and a file to a config; and the
checks the commands share at their boundary, before any work starts: reading options (units
by dimension, ``--index`` against the frame count), output paths (a file where a folder goes,
a non-empty folder without ``--overwrite``), and what a failed command must not leave behind
(:func:`removed_on_failure`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from torch import nn

from euclidnn.data.datasets import DATASETS, load_dataset
from euclidnn.data.readers import read
from euclidnn.data.sanity import label_scale_warnings
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
from euclidnn.train.config import TrainConfig, check_type
from euclidnn.train.stats import DataStatistics
from euclidnn.units import unit_factor

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


def load_config(
    path: str | os.PathLike | None, changes: Mapping[str, Mapping[str, Any]] | None = None
) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (safe loader; ``None`` → defaults), with the
    model's settings checked against its config class. Errors name the file and the key.

    ``changes`` (section → key → value, e.g. the command line's flags) replace the file's
    values before the whole is validated, so that a file may rely on them (a file with
    ``schedule.kind: cosine`` and ``--minutes`` given on the command line)."""
    changes = {section: dict(values) for section, values in (changes or {}).items() if values}
    if path is None:
        return check_model_settings(TrainConfig().replace(**changes))
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--config {path}: is a folder; give a YAML file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"--config {path}: no such config file") from None
    except UnicodeDecodeError:
        raise ValueError(f"--config {path}: not a text file; give a YAML file") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if isinstance(values, Mapping):
        values = dict(values)
        for section, keys in changes.items():
            if isinstance(values.get(section), Mapping):
                values[section] = {**values[section], **keys}
            elif values.get(section) is None:
                values[section] = keys
    try:
        return check_model_settings(TrainConfig.from_dict(values))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def check_model_settings(config: TrainConfig) -> TrainConfig:
    """Every ``model.settings`` key must be a field of the chosen model's config (not a fitted
    one), with a value of its type; the error names the key and lists the allowed keys or
    says which type is expected."""
    _, config_class, _ = MODELS[config.model.name]
    allowed = [f.name for f in dataclasses.fields(config_class) if f.name not in FITTED]
    hints = typing.get_type_hints(config_class)
    for key, value in config.model.settings.items():
        if key not in allowed:
            extra = " (it is fitted on the training set)" if key in FITTED else ""
            raise ValueError(
                f"model.settings.{key}: not a setting of {config.model.name}{extra}; "
                f"allowed: {', '.join(allowed)}"
            )
        check_type(f"model.settings.{key}", hints[key], value)
    try:  # the ranges the model's config checks (lmax 0–3, widths ≥ 1, …), before any work
        config_class(**model_settings(config))
    except (TypeError, ValueError) as err:
        raise ValueError(f"model.settings: {err}") from None
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
    group = parser.add_argument_group(
        "reading the data",
        "Units are converted to eV and Å. A file's own units (a database's metadata; extxyz "
        "headers such as energy_unit=Hartree force_unit=Hartree/Bohr, as `euclidnn label` writes "
        "them) are used unless an option overrides them; a unit must measure what it converts.",
    )
    group.add_argument("--index", default=":", help="frames to use, e.g. ':1250' or '1500:'")
    group.add_argument("--format", default=None, help="ASE format when the extension is unclear")
    for name, example in (
        ("energy-unit", "kcal/mol (MD17), Hartree, kJ/mol; default: the file's, else eV"),
        ("length-unit", "Bohr; default: the file's, else Å"),
        ("forces-unit", "e.g. Hartree/Bohr; default: the file's, else energy-unit/length-unit"),
        ("stress-unit", "default: the file's, else energy-unit/length-unit³"),
        ("energy-key", "label name in the file (default 'energy'; given, it must be there)"),
        ("forces-key", "label name in the file (default 'forces'; given, it must be there)"),
        ("stress-key", "label name in the file (default 'stress'; given, it must be there)"),
    ):
        group.add_argument(f"--{name}", default=None, help=example)


def read_options(args: argparse.Namespace, config: TrainConfig | None = None) -> dict[str, Any]:
    """Reader keyword arguments: command line first, then the config's data section (whose
    units :class:`TrainConfig` checked). A unit option of the wrong dimension (``--energy-unit
    Bohr``) is refused here, naming the option and valid units."""
    options = {}
    for key in ("energy_unit", "length_unit", "forces_unit", "stress_unit"):
        unit = getattr(args, key)
        if unit is not None:
            try:
                unit_factor(unit, key.removesuffix("_unit"))
            except ValueError as err:
                raise ValueError(f"--{key.replace('_', '-')} {unit!r}: {err}") from None
        options[key] = unit or (getattr(config.data, key) if config else None)
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
    chosen = select_frames(index, len(structures), source)
    return [structures[i] for i in chosen], [f"{path} frame {i}" for i in chosen]


def select_frames(index: str, count: int, path: str | os.PathLike) -> list[int]:
    """The frames of ``path`` (``count`` of them) that ``--index`` picks: a frame number
    (negative from the end) or ``start:stop[:step]``. Errors name the option and the count.

    >>> select_frames("-2:", 5, "a.xyz"), select_frames("3", 5, "a.xyz")
    ([3, 4], [3])
    >>> select_frames("7", 5, "a.xyz")
    Traceback (most recent call last):
    ...
    ValueError: a.xyz: --index '7': no frame 7; the file has 5 frames (0…4, or -5…-1 from the end)
    """
    try:
        parts = [int(p) if p.strip() else None for p in index.split(":")]
        if len(parts) > 3 or (len(parts) == 3 and parts[2] == 0):
            raise ValueError
    except ValueError:
        raise ValueError(
            f"--index {index!r}: expected a frame number or start:stop[:step] with a nonzero "
            "step, e.g. '0', '-1', ':1000', '1500:', '::10'"
        ) from None
    frames = list(range(count))
    if len(parts) == 1:
        if not -count <= parts[0] < count:
            raise ValueError(
                f"{path}: --index {index!r}: no frame {parts[0]}; the file has {count} frames "
                f"(0…{count - 1}, or {-count}…-1 from the end)"
            )
        return [frames[parts[0]]]
    chosen = frames[slice(*parts)]
    if not chosen:
        raise ValueError(f"{path}: --index {index!r} selects no frames of {count}")
    return chosen


def check_output(path: str | os.PathLike, option: str, *, folder: bool) -> Path:
    """Refuse an output path of the wrong kind before any work: a folder where a file will be
    written (``folder=False``), or a file where a folder will be (or above either)."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise FileExistsError(f"{option} {path}: is a file; give a folder")
    if not folder and path.is_dir():
        raise IsADirectoryError(f"{option} {path}: is a folder; give a file name in it")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f"{option} {path}: {parent} is a file, not a folder")
    return path


def refuse_existing(paths: Iterable[str | os.PathLike], option: str, overwrite: bool) -> None:
    """Refuse (``FileExistsError``) before any work when a file the command is about to write
    under ``option`` is already there, unless ``overwrite``: nothing a command wrote earlier is
    replaced silently (SPEC §8). Folders are left to :func:`check_output`'s kind checks.

    >>> refuse_existing(["/"], "--out", overwrite=False)  # a folder: not this check's business
    """
    existing = [Path(p) for p in paths if Path(p).exists() and not Path(p).is_dir()]
    if existing and not overwrite:
        listed = ", ".join(map(str, existing[:3])) + (", …" if len(existing) > 3 else "")
        verb, it = ("exists", "it") if len(existing) == 1 else ("exist", "them")
        raise FileExistsError(f"{option}: {listed} already {verb}; add --overwrite to replace {it}")


class Before(NamedTuple):
    """What an output folder was before a command: its entries (``None``: it did not exist)
    and the top-most folder the command creates for it (itself or a missing parent)."""

    entries: set[str] | None
    created: Path | None

    @classmethod
    def of(cls, path: Path) -> Before:
        if path.is_dir():
            return cls({p.name for p in path.iterdir()}, None)
        missing = [p for p in (path, *path.parents) if not p.exists()]
        return cls(None, missing[-1])


def new_output_folder(path: str | os.PathLike, option: str, overwrite: bool) -> Before:
    """Check and create a command's output folder (a non-empty one only with ``--overwrite``)
    and check that it can be written; what it was before, for :func:`removed_on_failure`."""
    path = check_output(path, option, folder=True)
    before = Before.of(path)
    if before.entries and not overwrite:
        raise FileExistsError(f"{option} {path}: folder is not empty; use --overwrite")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise PermissionError(
            f"{option} {path}: cannot write the folder ({err.strerror})"
        ) from None
    return before


@contextmanager
def removed_on_failure(
    folder: Path, before: Before, keep: Callable[[], bool] = lambda: False
) -> Iterator[None]:
    """Run the block; when it raises (an error or Ctrl-C), remove what it added to ``folder``
    — the entries that were not there ``before``, and the folders it created — unless
    ``keep()`` (e.g. a checkpoint to resume from was written), so that a failed command leaves
    nothing that makes its rerun need ``--overwrite``."""
    try:
        yield
    except BaseException:
        if not keep() and folder.is_dir():
            for entry in folder.iterdir():
                if before.entries is not None and entry.name in before.entries:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            if before.created is not None:  # the folder and the parents made for it
                for made in (folder, *folder.parents):
                    if any(made.iterdir()):
                        break
                    made.rmdir()
                    if made == before.created:
                        break
        raise


def positive_int(text: str) -> int:
    """An argparse type: an integer ≥ 1 (a batch size, a count).

    >>> positive_int("8")
    8
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 1, got {text!r}")
    return value


def check_label_scales(
    command: str,
    source: str,
    structures: list[Structure],
    max_force_rms: float | None = None,
    show: bool = True,
) -> None:
    """Warn (when ``show``) of labels whose scale suggests a wrong unit, and refuse forces
    above ``max_force_rms`` eV/Å (:func:`euclidnn.data.sanity.label_scale_warnings`); the
    messages name ``source``."""
    try:
        messages = label_scale_warnings(structures, max_force_rms)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    for message in messages if show else ():
        warn(command, f"{source}: {message}")


def warn(command: str, message: str) -> None:
    """One warning line on stderr, as ``euclidnn <command>: warning: <message>``."""
    print(f"euclidnn {command}: warning: {message}", file=sys.stderr, flush=True)


def write_yaml(path: Path, values: dict[str, Any]) -> None:
    """Write ``values`` as YAML atomically."""
    write_text(path, yaml.safe_dump(values, sort_keys=False))
