"""Save and load models: config as JSON in the safetensors metadata, weights as tensors.

Safe to load from strangers: safetensors holds only tensors and strings, never pickled code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from euclidnn.files import replacing
from euclidnn.models.allegro import Allegro, AllegroConfig
from euclidnn.models.heads import TensorHead, TensorHeadConfig
from euclidnn.models.interface import Potential
from euclidnn.models.nequip import NequIP, NequIPConfig
from euclidnn.models.schnet import SchNet, SchNetConfig

__all__ = ["save_model", "load_model", "describe_model", "build_model", "load_weights"]

FORMAT = "euclidnn.model"
FORMAT_VERSION = "2"  # 2: NequIPLayer's convolution is a submodule `conv` (1: its layers inline)
# the model classes a file may name, with their config classes and how to build from one
_MODELS: dict[str, tuple[type[nn.Module], type, Callable]] = {
    "SchNet": (SchNet, SchNetConfig, SchNet),
    "NequIP": (NequIP, NequIPConfig, NequIP),
    "Allegro": (Allegro, AllegroConfig, Allegro),
    "TensorHead": (TensorHead, TensorHeadConfig, TensorHead.from_config),
}


def describe_model(model: nn.Module) -> tuple[str, str]:
    """(class name, config as JSON): what :func:`build_model` needs to rebuild ``model``.

    >>> describe_model(SchNet(SchNetConfig(species=(1,), num_features=4)))[0]
    'SchNet'
    """
    name = type(model).__name__
    if name not in _MODELS or not isinstance(model, _MODELS[name][0]):
        raise TypeError(f"can save {sorted(_MODELS)}, got {type(model).__name__}")
    return name, json.dumps(dataclasses.asdict(model.config))


def build_model(name: str, config: str | Mapping[str, Any], where: str = "model") -> Potential:
    """A new model (random weights) of class ``name`` (``"SchNet"``, ``"NequIP"``,
    ``"TensorHead"``) with the config ``config``: its fields, as a mapping or as JSON.

    Raises ``ValueError`` naming ``where`` (e.g. the file) and the field when the class is
    unknown or the config is invalid or has unknown fields.

    >>> build_model("SchNet", {"species": [1, 8], "num_features": 4}).species
    (1, 8)
    """
    if name not in _MODELS:
        raise ValueError(f"{where}: unknown model {name!r}; known: {sorted(_MODELS)}")
    _, config_class, build = _MODELS[name]
    fields = config
    if isinstance(config, str) or config is None:
        try:
            fields = json.loads(config)
        except (TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"{where}: metadata 'config' is missing or not JSON ({err})") from err
    if not isinstance(fields, Mapping):
        raise ValueError(f"{where}: the config of {name} must be a mapping of its fields")
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(
            f"{where}: config has unknown fields {unknown} for {config_class.__name__}"
        )
    try:
        model_config = config_class(**fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: invalid {config_class.__name__}: {err}") from err
    return build(model_config)


def save_model(model: nn.Module, path: str | os.PathLike) -> None:
    """Write ``model`` (a :class:`SchNet` or :class:`NequIP`) to a ``.safetensors`` file.

    The metadata holds ``{"format", "version", "model", "config" (JSON)}``; the tensors are the
    ``state_dict`` (parameters and persistent buffers). Written to a temporary file and renamed,
    so a crash never leaves half a file.

    >>> import tempfile
    >>> from euclidnn.models import SchNet, SchNetConfig
    >>> model = SchNet(SchNetConfig(species=(1, 8), num_features=8))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_model(model, f"{d}/m.safetensors")
    ...     load_model(f"{d}/m.safetensors").config == model.config
    True
    """
    name, config = describe_model(model)
    metadata = {"format": FORMAT, "version": FORMAT_VERSION, "model": name, "config": config}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_model(path: str | os.PathLike, *, device: torch.device | str | None = None) -> nn.Module:
    """Rebuild a model saved by :func:`save_model`: its class, config and weights.

    The weights keep the floating dtype they were saved in. Raises ``ValueError`` naming the
    file and the field when the file is not a euclidnn model, the config is invalid or has
    unknown fields, or the tensors do not match the shapes the config implies.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a safetensors file ({err})") from err
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{path}: not a euclidnn model file (metadata 'format' is {metadata.get('format')!r})"
        )
    version = metadata.get("version")
    if version not in _MIGRATIONS and version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format version {version!r}, this euclidnn reads "
            f"{sorted([*_MIGRATIONS, FORMAT_VERSION])}"
        )
    name = metadata.get("model")
    model = build_model(name, metadata.get("config"), where=str(path))
    tensors = load_file(str(path))
    if version in _MIGRATIONS:
        tensors = _MIGRATIONS[version](name, tensors)
    model = load_weights(model, tensors, where=str(path))
    return model.to(device) if device is not None else model


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> nn.Module:
    """Load a state dict into ``model`` after checking names and shapes; the model takes the
    tensors' floating dtype. ``ValueError`` naming ``where`` and each mismatch."""
    name = type(model).__name__
    expected = model.state_dict()
    problems = [f"missing tensor {k!r}" for k in expected if k not in tensors]
    problems += [f"unexpected tensor {k!r}" for k in tensors if k not in expected]
    problems += [
        f"tensor {k!r} has shape {tuple(tensors[k].shape)}, the config implies {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if problems:
        raise ValueError(f"{where}: weights do not match the {name} config: " + "; ".join(problems))
    dtypes = {v.dtype for v in tensors.values() if v.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtype=dtypes.pop())
    model.load_state_dict(tensors)
    return model


def _from_version_1(name: str, tensors: dict) -> dict:
    """Format 1 → 2: a NequIP layer's linear_1, tensor_product, radial and linear_2 now sit in
    its ``conv`` (an :class:`~euclidnn.nn.EquivariantConv`)."""
    if name != "NequIP":
        return tensors
    inline = re.compile(r"^(layers\.\d+\.)(linear_1|tensor_product|radial|linear_2)\.")
    return {inline.sub(r"\1conv.\2.", k): v for k, v in tensors.items()}


_MIGRATIONS = {"1": _from_version_1}  # older format version -> function to the current one
