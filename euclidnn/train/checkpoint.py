"""``last.ckpt``: everything needed to continue a run exactly, in one safetensors file.

Tensors: ``model.*`` (the raw weights, as in ``state_dict``), ``ema.*`` (the averaged
weights), ``optimizer.<i>.<key>`` (the optimizer's per-parameter state), ``rng.torch`` (the
CPU random-number state). Metadata (JSON strings): the model's class and config, the training
config, the loop's state (epoch, batch, step, elapsed time, best validation loss, history), the
optimizer's parameter groups, the scheduler's state. Nothing is unpickled on load, so a
checkpoint from a stranger cannot run code. Written to a temporary file and renamed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from euclidnn.models.io import build_model, describe_model, load_weights

__all__ = ["TrainState", "Checkpoint", "save_checkpoint", "load_checkpoint"]

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
        history: one dict per validation (what the CSV log holds).
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    elapsed: float = 0.0
    best_loss: float = float("inf")
    best_epoch: float = 0.0
    bad_validations: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (raw weights), and the rest as plain values."""

    model: nn.Module
    config: dict[str, Any]
    state: TrainState
    ema: dict[str, Tensor]
    ema_updates: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: Tensor


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    config: dict[str, Any],
    state: TrainState,
    ema_tensors: dict[str, Tensor],
    ema_updates: int,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> None:
    """Write the run's state to ``path`` atomically (see the module docstring)."""
    name, model_config = describe_model(model)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema_tensors.items()})
    optim = optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for index, values in optim["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                plain_state.setdefault(str(index), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
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
        "scheduler": json.dumps(scheduler.state_dict()),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


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
        model = build_model(metadata["model"], metadata["model_config"], where=str(path))
        weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        model = load_weights(model, weights, where=str(path))
        state = TrainState(**json.loads(metadata["state"]))
        plain = json.loads(metadata["optimizer_plain"])
        optim_state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                optim_state.setdefault(int(index), {})[name] = value
        for index, values in plain.items():
            optim_state.setdefault(int(index), {}).update(values)
        return Checkpoint(
            model=model,
            config=json.loads(metadata["train_config"]),
            state=state,
            ema={k[4:]: v for k, v in tensors.items() if k.startswith("ema.")},
            ema_updates=int(metadata["ema_updates"]),
            optimizer={
                "state": optim_state,
                "param_groups": json.loads(metadata["optimizer_groups"]),
            },
            scheduler=json.loads(metadata["scheduler"]),
            rng=tensors["rng.torch"],
        )
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: checkpoint is incomplete or inconsistent ({err!r})") from err
