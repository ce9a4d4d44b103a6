"""Save and load models: config as JSON in the safetensors metadata, weights as tensors.

Safe to load from strangers: safetensors holds only tensors and strings, never pickled code,
and a config cannot make the loader allocate what the file does not hold. A model file of a
few hundred bytes may ask for ``num_features: 10000000``; building such a model would request
terabytes before any shape is compared. So every model is built under a budget
(:data:`MAX_MODEL_ELEMENTS` numbers, :data:`MAX_BUILD_CALLS` tensor operations), and one loaded
from a file under a tighter one: the elements the file's header says it holds, with room for
the temporaries of building (:func:`load_model` reads the header's shapes without loading the
tensors). A config over budget is refused with one line naming the file and its largest sizes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.overrides import TorchFunctionMode

from euclidnn.files import replacing
from euclidnn.models.allegro import Allegro, AllegroConfig
from euclidnn.models.heads import TensorHead, TensorHeadConfig
from euclidnn.models.interface import Potential
from euclidnn.models.nequip import NequIP, NequIPConfig
from euclidnn.models.schnet import SchNet, SchNetConfig

__all__ = [
    "save_model",
    "load_model",
    "describe_model",
    "build_model",
    "load_weights",
    "MAX_MODEL_ELEMENTS",
    "MAX_BUILD_CALLS",
]

FORMAT = "euclidnn.model"
FORMAT_VERSION = "2"  # 2: NequIPLayer's convolution is a submodule `conv` (1: its layers inline)
# the model classes a file may name, with their config classes and how to build from one
_MODELS: dict[str, tuple[type[nn.Module], type, Callable]] = {
    "SchNet": (SchNet, SchNetConfig, SchNet),
    "NequIP": (NequIP, NequIPConfig, NequIP),
    "Allegro": (Allegro, AllegroConfig, Allegro),
    "TensorHead": (TensorHead, TensorHeadConfig, TensorHead.from_config),
}


#: the most numbers building a model may allocate (parameters, buffers and the temporaries of
#: building): 10⁹, 4–8 GB. The largest models here are far below it (NequIP with 89 species,
#: lmax 3, 128 features and 6 layers: 8·10⁷ parameters, 1.7·10⁸ numbers allocated).
MAX_MODEL_ELEMENTS = 10**9
#: the most tensor operations building a model may take: bounds the time a config can cost
#: (10⁵ ≈ 20 s of NequIP layers; that largest model takes 2·10⁴)
MAX_BUILD_CALLS = 10**5


def _file_budget(held: int) -> tuple[int, int]:
    """(numbers, tensor operations) to build a model read from a file that holds ``held``
    numbers: the temporaries of building (Clebsch–Gordan tables, the gates' second-moment
    integrals) are about as many as the weights, and the tiny default NequIP (7·10⁴ numbers)
    takes 1.2·10³ operations."""
    return 2 * held + 10**6, 10**4 + held // 10


class _Budget(TorchFunctionMode):
    """Count what tensor creation asks for while a model is built, and refuse (before the
    allocation) what goes over ``elements`` numbers or ``calls`` operations."""

    _SIZED = {torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn, torch.full}
    _NEW = {torch.Tensor.new_empty, torch.Tensor.new_zeros, torch.Tensor.new_ones}

    def __init__(self, elements: int, calls: int, refuse: Callable[[str], ValueError]) -> None:
        super().__init__()
        self.elements, self.calls, self.refuse = elements, calls, refuse
        self.max_calls = calls

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.calls -= 1
        self.elements -= self._requested(func, args, kwargs)
        if self.elements < 0:
            raise self.refuse("")
        if self.calls < 0:
            raise self.refuse(f"more than {self.max_calls:,} tensor operations to build")
        return func(*args, **kwargs)

    @classmethod
    def _requested(cls, func, args, kwargs) -> int:
        """Numbers a factory call asks for (0 for other calls, bounded by their inputs)."""
        if func is torch.eye:
            n = args[0] if args else kwargs.get("n", 0)
            return int(n) * int(args[1] if len(args) > 1 else kwargs.get("m", n) or n)
        if func not in cls._SIZED and func not in cls._NEW:
            return 0
        sizes = args[1:] if func in cls._NEW else args
        sizes = sizes[:1] if func is torch.full else sizes
        if "size" in kwargs:
            sizes = (kwargs["size"],)
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list, torch.Size)):
            sizes = tuple(sizes[0])
        try:
            return math.prod(int(n) for n in sizes)
        except (TypeError, ValueError):
            return 0


def _built_within(build: Callable, model_config, where: str, held: int | None):
    """``build(model_config)`` under a :class:`_Budget`: :data:`MAX_MODEL_ELEMENTS`, or for a
    file that holds ``held`` numbers, room for those and the temporaries of building. The error
    names ``where``, the budget and the config's largest sizes."""
    elements, why = MAX_MODEL_ELEMENTS, "the limit for any model, MAX_MODEL_ELEMENTS"
    calls = MAX_BUILD_CALLS
    if held is not None:
        for_file, calls_for_file = _file_budget(held)
        calls = min(calls, calls_for_file)
        if for_file < elements:
            elements, why = for_file, f"the file holds {held:,}"

    def refuse(reason: str) -> ValueError:
        sizes = _largest_sizes(dataclasses.asdict(model_config))
        return ValueError(
            f"{where}: the {type(model_config).__name__} asks for "
            f"{reason or f'more than {elements:,} numbers ({why})'}; its largest sizes: "
            f"{sizes}; refusing to build it"
        )

    with _Budget(elements, calls, refuse):
        return build(model_config)


def _largest_sizes(fields: Mapping[str, Any], prefix: str = "") -> str:
    """``num_features=100000, num_layers=4``: the integer fields of a config, largest first."""
    found = []
    for key, value in fields.items():
        if isinstance(value, Mapping):
            found.append((0, _largest_sizes(value, f"{prefix}{key}.")))
        elif isinstance(value, int) and not isinstance(value, bool):
            found.append((value, f"{prefix}{key}={value}"))
    return ", ".join(text for _, text in sorted(found, reverse=True)[:3] if text)


def describe_model(model: nn.Module) -> tuple[str, str]:
    """(class name, config as JSON): what :func:`build_model` needs to rebuild ``model``.

    >>> describe_model(SchNet(SchNetConfig(species=(1,), num_features=4)))[0]
    'SchNet'
    """
    name = type(model).__name__
    if name not in _MODELS or not isinstance(model, _MODELS[name][0]):
        raise TypeError(f"can save {sorted(_MODELS)}, got {type(model).__name__}")
    return name, json.dumps(dataclasses.asdict(model.config))


def build_model(
    name: str,
    config: str | Mapping[str, Any],
    where: str = "model",
    *,
    held: int | None = None,
) -> Potential:
    """A new model (random weights) of class ``name`` (``"SchNet"``, ``"NequIP"``,
    ``"TensorHead"``) with the config ``config``: its fields, as a mapping or as JSON.

    Building allocates at most :data:`MAX_MODEL_ELEMENTS` numbers — or, for a config read
    from a file that holds ``held`` numbers, twice those and 10⁶ more — and takes at most
    :data:`MAX_BUILD_CALLS` tensor operations; a config that asks for more is refused before
    the allocation.

    Raises ``ValueError`` naming ``where`` (e.g. the file) and the field when the class is
    unknown, the config is invalid or has unknown fields, or it is over budget.

    >>> build_model("SchNet", {"species": [1, 8], "num_features": 4}).species
    (1, 8)
    >>> build_model("SchNet", {"species": [1], "num_features": 10**7}, where="m.safetensors")
    Traceback (most recent call last):
    ...
    ValueError: m.safetensors: the SchNetConfig asks for more than 1,000,000,000 numbers (the limit for any model, MAX_MODEL_ELEMENTS); its largest sizes: num_features=10000000, num_basis=25, num_interactions=3; refusing to build it
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
    return _built_within(build, model_config, where, held)


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
    unknown fields, it asks for more numbers than the file holds (see :func:`build_model`;
    checked before they are allocated), or the tensors do not match the shapes it implies.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a model file, e.g. model.safetensors")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            held = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
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
    model = build_model(name, metadata.get("config"), where=str(path), held=held)
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
