"""``last.ckpt``: everything needed to continue a run exactly, in one safetensors file.

Tensors: ``model.*`` (the raw weights, as in ``state_dict``), ``ema.*`` (the averaged
weights), ``optimizer.<i>.<key>`` (the optimizer's per-parameter state), ``rng.torch`` (the
CPU random-number state). Metadata (JSON strings): the model's class and config, the training
config, the loop's state (epoch, batch, step, elapsed time, best validation loss, history), the
optimizer's parameter groups, the plateau scheduler's state (null under a deadline schedule,
whose rate follows from the elapsed time). The point a divergence recovery returns to
(:class:`Snapshot`: weights, averaged weights and optimizer at the best validation) is kept
under ``best.`` (``best.model.*``, ``best.ema.*``, ``best.optimizer.<i>.<key>``, metadata
``best``); checkpoints written before it existed load with ``best = None``, and their training
config without ``schedule.kind`` is read as ``plateau`` (the only schedule then). Nothing is
unpickled on load, so a checkpoint from a stranger cannot run code. Written whole
(:func:`euclidnn.files.replacing`).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from euclidnn.files import replacing
from euclidnn.models.io import build_model, describe_model, load_weights
from euclidnn.train.ema import EMA

__all__ = ["TrainState", "Snapshot", "Checkpoint", "save_checkpoint", "load_checkpoint"]

FORMAT = "euclidnn.checkpoint"
FORMAT_VERSION = "1"


@dataclass
class TrainState:
    """Where the loop is. ``batch`` is the next batch of ``epoch`` to train on.

    Attributes:
        epoch: 0-based epoch in progress.
        batch: batches of this epoch already done.
        step: optimizer steps so far.
        elapsed: seconds of training so far (summed over resumes).
        best_loss: best validation loss so far (``inf`` before the first).
        best_epoch: the (fractional) epoch at which it was reached.
        bad_validations: validations since the last improvement.
        recoveries: times the run went back to its best point after a divergence.
        lr_scale: the factor by which the recoveries lowered a cosine or linear schedule's
            peak (1 before any; a plateau schedule's rate is in the optimizer's state).
        history: one dict per validation (what the CSV log holds).
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    elapsed: float = 0.0
    best_loss: float = float("inf")
    best_epoch: float = 0.0
    bad_validations: int = 0
    recoveries: int = 0
    lr_scale: float = 1.0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """The weights and the optimizer at one point of a run, kept apart from the live ones:
    what :func:`~euclidnn.train.fit` returns to when the validation loss diverges.

    Attributes:
        model: the raw weights (``state_dict``).
        ema: the averaged weights by parameter name.
        ema_updates: the EMA's update count.
        optimizer: the optimizer's ``state_dict`` (moments, step counts, parameter groups).

    >>> model = nn.Linear(1, 1, bias=False)
    >>> optimizer = torch.optim.Adam(model.parameters())
    >>> ema = EMA(model, decay=0.9)
    >>> kept = Snapshot.take(model, ema, optimizer)
    >>> _ = nn.init.constant_(model.weight, 7.0)
    >>> kept.restore(model, ema, optimizer)
    >>> model.weight.item() == kept.model["weight"].item() != 7.0
    True
    """

    model: dict[str, Tensor]
    ema: dict[str, Tensor]
    ema_updates: int
    optimizer: dict[str, Any]

    @classmethod
    def take(cls, model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer) -> Snapshot:
        """Copies (not views) of the model's, the EMA's and the optimizer's state now."""
        return cls(
            model={k: v.detach().clone() for k, v in model.state_dict().items()},
            ema={k: v.clone() for k, v in ema.state_tensors().items()},
            ema_updates=ema.num_updates,
            optimizer=copy.deepcopy(optimizer.state_dict()),
        )

    def restore(self, model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer) -> None:
        """Put the kept state back; copies again, since the EMA and the optimizer update their
        tensors in place and would otherwise change the snapshot."""
        model.load_state_dict(self.model)
        ema.load({k: v.clone() for k, v in self.ema.items()}, self.ema_updates)
        optimizer.load_state_dict(copy.deepcopy(self.optimizer))


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (raw weights), and the rest as plain values."""

    model: nn.Module
    config: dict[str, Any]
    state: TrainState
    ema: dict[str, Tensor]
    ema_updates: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None  # None: the run follows a deadline, which keeps no state
    rng: Tensor
    best: Snapshot | None = None


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    config: dict[str, Any],
    state: TrainState,
    ema_tensors: dict[str, Tensor],
    ema_updates: int,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    best: Snapshot | None = None,
) -> None:
    """Write the run's state to ``path`` atomically (see the module docstring); ``scheduler``
    is the plateau schedule (``None`` for a deadline schedule, whose rate follows from
    ``state``); ``best`` is the point a divergence recovery returns to."""
    name, model_config = describe_model(model)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema_tensors.items()})
    optim = optimizer.state_dict()
    plain_state = _split_optimizer(optim, "optimizer.", tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": name,
        "model_config": model_config,
        "train_config": json.dumps(config),
        "state": json.dumps(asdict(state)),
        "ema_updates": str(ema_updates),
        "optimizer_groups": json.dumps(optim["param_groups"]),
        "optimizer_plain": json.dumps(plain_state),
        "scheduler": json.dumps(scheduler.state_dict() if scheduler is not None else None),
    }
    if best is not None:
        tensors.update({f"best.model.{k}": v for k, v in best.model.items()})
        tensors.update({f"best.ema.{k}": v for k, v in best.ema.items()})
        best_plain = _split_optimizer(best.optimizer, "best.optimizer.", tensors)
        metadata["best"] = json.dumps(
            {
                "ema_updates": best.ema_updates,
                "optimizer_groups": best.optimizer["param_groups"],
                "optimizer_plain": best_plain,
            }
        )
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _split_optimizer(
    optim: dict[str, Any], prefix: str, tensors: dict[str, Tensor]
) -> dict[str, dict[str, Any]]:
    """Put an optimizer state's tensors into ``tensors`` as ``<prefix><i>.<key>``; return the
    rest (plain values, by parameter index) for the metadata."""
    plain: dict[str, dict[str, Any]] = {}
    for index, values in optim["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"{prefix}{index}.{key}"] = value
            else:
                plain.setdefault(str(index), {})[key] = value
    return plain


def _join_optimizer(
    tensors: dict[str, Tensor], prefix: str, plain: dict[str, Any], groups: list
) -> dict[str, Any]:
    """The optimizer ``state_dict`` that :func:`_split_optimizer` took apart."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, name = key[len(prefix) :].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    for index, values in plain.items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": groups}


def _prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        ValueError: the file is truncated, not a safetensors file, not a euclidnn checkpoint,
            of another format version, or inconsistent (naming the file and what is wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(
            f"{path}: not a readable checkpoint (truncated or foreign: {err})"
        ) from err
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: not a euclidnn checkpoint (format {metadata.get('format')!r})")
    if metadata.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint version {metadata.get('version')!r}, this euclidnn reads "
            f"{FORMAT_VERSION!r}"
        )
    try:
        held = sum(v.numel() for k, v in tensors.items() if k.startswith("model."))
        model = build_model(metadata["model"], metadata["model_config"], where=str(path), held=held)
        model = load_weights(model, _prefixed(tensors, "model."), where=str(path))
        return Checkpoint(
            model=model,
            config=_migrated(json.loads(metadata["train_config"])),
            state=TrainState(**json.loads(metadata["state"])),
            ema=_prefixed(tensors, "ema."),
            ema_updates=int(metadata["ema_updates"]),
            optimizer=_join_optimizer(
                tensors,
                "optimizer.",
                json.loads(metadata["optimizer_plain"]),
                json.loads(metadata["optimizer_groups"]),
            ),
            scheduler=json.loads(metadata["scheduler"]),
            rng=tensors["rng.torch"],
            best=_load_best(tensors, metadata),
        )
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: checkpoint is incomplete or inconsistent ({err!r})") from err


def _migrated(config: dict[str, Any]) -> dict[str, Any]:
    """A training config as this version reads it: runs from before ``schedule.kind`` existed
    followed the plateau schedule, and a resumed run keeps its schedule."""
    schedule = config.get("schedule")
    if isinstance(schedule, dict):
        schedule.setdefault("kind", "plateau")
    return config


def _load_best(tensors: dict[str, Tensor], metadata: dict[str, str]) -> Snapshot | None:
    if "best" not in metadata:  # written before recoveries existed
        return None
    values = json.loads(metadata["best"])
    return Snapshot(
        model=_prefixed(tensors, "best.model."),
        ema=_prefixed(tensors, "best.ema."),
        ema_updates=int(values["ema_updates"]),
        optimizer=_join_optimizer(
            tensors, "best.optimizer.", values["optimizer_plain"], values["optimizer_groups"]
        ),
    )
