"""``fit``: the training loop, top to bottom.

batch → predict(training=True) → loss → step → EMA → (validate → schedule → save) → checkpoint.

One process, or several under ``torchrun`` (``torch.distributed`` initialised by the caller):
every process sees the same global batches — batch b of epoch e is the same list of structures
whatever the number of processes — and takes its share of each; the loss is normalised by the
counts of the whole batch, so N processes reach the weights one process reaches. Validation
counts each structure once. Only rank 0 writes files.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from euclidnn.data.loader import collate_batch
from euclidnn.data.structure import Structure
from euclidnn.models.io import describe_model, save_model
from euclidnn.train.checkpoint import TrainState, load_checkpoint, save_checkpoint
from euclidnn.train.config import TrainConfig
from euclidnn.train.ema import EMA
from euclidnn.train.loss import LossTerms, labelled_pairs, loss_terms, model_outputs
from euclidnn.train.metrics import Comparison, compare, metrics

__all__ = [
    "fit",
    "FitResult",
    "TrainingDiverged",
    "check_labels",
    "check_training_data",
    "epoch_order",
]


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` did.

    Attributes:
        best_loss: best validation loss (the weighted loss of the config).
        best_metrics: validation metrics at that point (see :func:`~euclidnn.train.metrics`).
        epochs: epochs done (fractional when stopped mid-epoch).
        steps: optimizer steps.
        seconds: wall-clock seconds of training (all resumes).
        stop_reason: why it stopped.
        history: one dict per validation.
    """

    best_loss: float
    best_metrics: dict[str, float]
    epochs: float
    steps: int
    seconds: float
    stop_reason: str
    history: list[dict[str, Any]]


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The order of the training structures in ``epoch``: a permutation that depends only on
    (n, seed, epoch), so a resumed run and any number of processes see the same batches.

    >>> epoch_order(5, seed=0, epoch=1) == epoch_order(5, seed=0, epoch=1)
    True
    """
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=generator).tolist()


def check_labels(
    structures: Sequence[Structure], names: Sequence[str], config: TrainConfig, role: str
) -> None:
    """Refuse data the loss cannot use, naming the structure and the field: no structures,
    missing labels, or a label present in only some structures."""
    if not structures:
        raise ValueError(f"{role} set is empty")
    loss = config.loss
    if loss.property is not None:
        fields = {loss.property: [s.properties.get(loss.property) for s in structures]}
    else:
        fields = {"energy": [s.energy for s in structures]}
        if loss.forces_weight > 0:
            fields["forces"] = [s.forces for s in structures]
        if loss.stress_weight > 0:
            fields["stress"] = [s.stress for s in structures]
    for field, values in fields.items():
        missing = [name for name, v in zip(names, values) if v is None]
        required = field in ("energy", loss.property)
        if missing and (required or len(missing) < len(values)):
            raise ValueError(
                f"{missing[0]}: no {field!r} label ({len(missing)} of {len(values)} {role} "
                f"structures lack it{'' if required else '; give it for all or for none'})"
            )


def check_training_data(
    model: nn.Module,
    structures: Sequence[Structure],
    names: Sequence[str],
    config: TrainConfig,
    role: str,
) -> None:
    """:func:`check_labels`, and every element must be one of the model's species."""
    check_labels(structures, names, config, role)
    species = set(model.species)
    for s, name in zip(structures, names):
        unknown = sorted({int(z) for z in s.numbers} - species)
        if unknown:
            raise ValueError(
                f"{name}: elements {unknown} are not among the model's species {sorted(species)}"
            )


class _Group:
    """The processes training together (one, or those of ``torch.distributed``)."""

    def __init__(self) -> None:
        active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if active else 0
        self.size = dist.get_world_size() if active else 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.size > 1:
            tensor = tensor.clone()
            dist.all_reduce(tensor)
        return tensor

    def gather(self, value: Any) -> list[Any]:
        if self.size == 1:
            return [value]
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values


def fit(
    model: nn.Module,
    train: Sequence[Structure],
    valid: Sequence[Structure],
    config: TrainConfig | None = None,
    out: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    train_names: Sequence[str] | None = None,
    valid_names: Sequence[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FitResult:
    """Train ``model`` on ``train``, validating on ``valid``; write the run to ``out``.

    The run folder (when ``out`` is given) receives ``model.safetensors`` (the best validation
    model, EMA weights, loadable by :func:`~euclidnn.models.load_model`), ``last.ckpt`` (to
    resume), ``log.csv`` (one row per validation) and TensorBoard events when ``tensorboard``
    is installed. With ``resume=True`` the run continues from ``out/last.ckpt`` exactly where
    it stopped (same weights, optimizer, EMA, schedule, data order).

    Args:
        model: a :class:`~euclidnn.models.SchNet`, :class:`~euclidnn.models.NequIP` or
            :class:`~euclidnn.models.TensorHead` (its dtype and device are used).
        train, valid: labelled structures (eV, Å).
        config: the run's settings (:class:`~euclidnn.train.TrainConfig`; default: defaults).
        out: the run folder (created); ``None`` writes nothing.
        resume: continue the run in ``out``.
        train_names, valid_names: how errors name each structure (e.g. "file.xyz frame 3").
        progress: show a progress bar per epoch.
        log: where progress lines go (rank 0 only).

    Raises:
        TrainingDiverged: the loss became NaN/inf (naming the epoch and the batch's structures).
        ValueError: unusable data or checkpoint (naming the structure or file).
    """
    cfg = config or TrainConfig()
    group = _Group()
    lead = group.rank == 0
    say = log if lead else (lambda message: None)
    out = Path(out) if out is not None else None
    train_names = list(train_names or [f"training structure {i}" for i in range(len(train))])
    valid_names = list(valid_names or [f"validation structure {i}" for i in range(len(valid))])
    check_training_data(model, train, train_names, cfg, "training")
    check_training_data(model, valid, valid_names, cfg, "validation")
    device, dtype = model.device, model.dtype
    train_items = labelled_pairs(train, model.cutoff, dtype, cfg.loss)
    valid_items = labelled_pairs(valid, model.cutoff, dtype, cfg.loss)[group.rank :: group.size]

    trained = nn.parallel.DistributedDataParallel(model) if group.size > 1 else model
    optimizer_class = torch.optim.AdamW if cfg.optimizer.name == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(
        model.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        factor=cfg.schedule.plateau_factor,
        patience=cfg.schedule.plateau_patience,
        min_lr=cfg.schedule.min_lr,
    )
    ema = EMA(model, cfg.optimizer.ema_decay)
    state = TrainState()
    if resume:
        state = _restore(out, model, optimizer, scheduler, ema)
        say(f"resumed from {out / 'last.ckpt'}: epoch {state.epoch}, batch {state.batch}")
    if lead and out is not None:
        out.mkdir(parents=True, exist_ok=True)
    board = _tensorboard(out) if lead and out is not None else None

    batch_size = cfg.optimizer.batch_size
    num_batches = math.ceil(len(train_items) / batch_size)
    per_epoch = min(cfg.schedule.validations_per_epoch, num_batches)
    validate_after = {round(num_batches * (k + 1) / per_epoch) for k in range(per_epoch)}
    budget = math.inf if cfg.run.minutes is None else 60 * cfg.run.minutes
    started = time.perf_counter() - state.elapsed
    last_checkpoint = time.perf_counter()
    stop_reason, train_loss, bar = "", [0.0, 0], None

    def elapsed() -> float:
        return time.perf_counter() - started

    def checkpoint() -> None:
        state.elapsed = elapsed()
        if lead and out is not None:
            save_checkpoint(
                out / "last.ckpt",
                model,
                cfg.to_dict(),
                state,
                ema.state_tensors(),
                ema.num_updates,
                optimizer,
                scheduler,
            )

    def validate() -> str:
        """Validate the EMA weights; schedule, save the best, log; a reason to stop or ''."""
        with ema.applied(model):
            part, terms = compare(model, valid_items, cfg.loss, batch_size=32)
        comparison = Comparison.concatenate(group.gather(part))
        total = LossTerms(group.sum(terms.sums), group.sum(terms.counts))
        loss = total.weighted(cfg.loss).item()
        values = metrics(comparison)
        lr = optimizer.param_groups[0]["lr"]
        row = {
            "epoch": round(state.epoch + state.batch / num_batches, 4),
            "step": state.step,
            "seconds": round(elapsed(), 2),
            "lr": lr,
            "train_loss": train_loss[0] / max(train_loss[1], 1),  # mean since last validation
            "valid_loss": loss,
            **{k: values[k] for k in _LOGGED if k in values},
        }
        state.history.append(row)
        train_loss[:] = [0.0, 0]
        improved = loss < state.best_loss
        if improved:
            state.best_loss, state.best_epoch, state.bad_validations = loss, row["epoch"], 0
            if lead and out is not None:
                with ema.applied(model):
                    save_model(model, out / "model.safetensors")
        else:
            state.bad_validations += 1
        scheduler.step(loss)
        if lead and out is not None:
            _write_csv(out / "log.csv", state.history)
        if board is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, float):
                    board.add_scalar(key, value, state.step)
            board.flush()
        if not math.isfinite(loss):
            return f"validation loss is {loss}"
        patience = cfg.schedule.early_stopping_patience
        if patience and state.bad_validations >= patience:
            return f"no improvement in {patience} validations (early stopping)"
        if lr <= cfg.schedule.min_lr and state.bad_validations > cfg.schedule.plateau_patience:
            return f"learning rate at its minimum {cfg.schedule.min_lr:g} and no improvement"
        return ""

    while state.epoch < cfg.run.max_epochs and not stop_reason:
        order = epoch_order(len(train_items), cfg.run.seed, state.epoch)
        bar = tqdm(
            total=num_batches,
            initial=state.batch,
            desc=f"epoch {state.epoch + 1}",
            disable=not (progress and lead),
            leave=False,
            dynamic_ncols=True,
        )
        while state.batch < num_batches:
            indices = order[state.batch * batch_size : (state.batch + 1) * batch_size]
            mine = indices[group.rank :: group.size]
            # a process without a structure in this (last, short) batch still takes part in the
            # collective calls, with one structure weighted by zero
            weight = 1.0 if mine else 0.0
            graph, targets = collate_batch([train_items[i] for i in mine or indices[:1]])
            graph, targets = graph.to(device), targets.to(device)
            out_ = model_outputs(trained, graph, targets, cfg.loss, training=True)
            terms = loss_terms(out_, graph, targets, cfg.loss)
            terms = LossTerms(terms.sums * weight, terms.counts * weight)
            counts = group.sum(terms.counts)
            loss = terms.weighted(cfg.loss, counts) * group.size
            total = group.sum(loss.detach()).item() / group.size
            if not math.isfinite(total):
                names = [train_names[i] for i in indices]
                raise TrainingDiverged(
                    f"the training loss became {total} at epoch {state.epoch + 1}, batch "
                    f"{state.batch + 1} (structures: {', '.join(names[:8])}"
                    f"{', …' if len(names) > 8 else ''}); the last good checkpoint is "
                    f"{out / 'last.ckpt' if out is not None else 'not written (no out)'}; "
                    "lower optimizer.lr or check these structures' labels"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optimizer.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.optimizer.grad_clip)
            optimizer.step()
            ema.update(model)
            state.step += 1
            state.batch += 1
            train_loss[0], train_loss[1] = train_loss[0] + total, train_loss[1] + 1
            if state.batch in validate_after:
                stop_reason = validate()
            bar.update(1)
            if state.step % 10 == 0 or state.batch in validate_after:
                bar.set_postfix_str(_postfix(state.history, train_loss, budget - elapsed()))
            over_budget = group.sum(torch.tensor(float(elapsed() > budget))).item() > 0
            if over_budget and not stop_reason:
                stop_reason = f"time budget of {cfg.run.minutes:g} min spent"
            if stop_reason:
                break
            every = cfg.run.checkpoint_every
            if (every and state.step % every == 0) or (
                time.perf_counter() - last_checkpoint > 60 * cfg.run.checkpoint_minutes
            ):
                checkpoint()
                last_checkpoint = time.perf_counter()
        bar.close()
        if state.batch == num_batches:
            state.epoch, state.batch = state.epoch + 1, 0
            say(_epoch_line(state))
        checkpoint()
        last_checkpoint = time.perf_counter()
    if not stop_reason:
        stop_reason = f"reached max_epochs = {cfg.run.max_epochs}"
    if not state.history or state.history[-1]["step"] != state.step:
        validate()
        checkpoint()
    if board is not None:
        board.close()
    best = min(state.history, key=lambda r: r["valid_loss"])
    say(
        f"stopped: {stop_reason}; best validation loss {state.best_loss:.4g} at epoch {best['epoch']}"
    )
    return FitResult(
        best_loss=state.best_loss,
        best_metrics={k: v for k, v in best.items() if k in _LOGGED},
        epochs=state.epoch + state.batch / num_batches,
        steps=state.step,
        seconds=elapsed(),
        stop_reason=stop_reason,
        history=state.history,
    )


#: validation metrics kept in the history and the CSV log
_LOGGED = (
    "energy_per_atom_mae_meV",
    "energy_mae_meV",
    "forces_mae_meV_per_A",
    "forces_rmse_meV_per_A",
    "stress_mae_meV_per_A3",
    "property_mae",
    "property_rmse",
)


def _restore(out, model, optimizer, scheduler, ema) -> TrainState:
    if out is None:
        raise ValueError("resume: give the run folder (out)")
    ck = load_checkpoint(out / "last.ckpt")
    if describe_model(ck.model) != describe_model(model):
        raise ValueError(
            f"{out / 'last.ckpt'}: the checkpoint's model ({describe_model(ck.model)[0]}) is not "
            "the model given to fit; build it from the checkpoint"
        )
    model.load_state_dict(ck.model.state_dict())
    try:
        optimizer.load_state_dict(ck.optimizer)
        scheduler.load_state_dict(ck.scheduler)
        ema.load(ck.ema, ck.ema_updates)
    except (KeyError, ValueError, RuntimeError) as err:
        raise ValueError(f"{out / 'last.ckpt'}: cannot restore the training state ({err})") from err
    torch.set_rng_state(ck.rng)
    return ck.state


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional extra: pip install euclidnn[tensorboard]
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text.getvalue())
    os.replace(tmp, path)


def _postfix(history: list[dict[str, Any]], train_loss: list, seconds_left: float) -> str:
    """The progress bar's text: training loss so far, the last validation, time left."""
    parts = [f"loss {train_loss[0] / max(train_loss[1], 1):.3g}"] if train_loss[1] else []
    if history:
        row = history[-1]
        parts.append(f"valid {row['valid_loss']:.3g}")
        if "energy_per_atom_mae_meV" in row:
            parts.append(f"E {row['energy_per_atom_mae_meV']:.2f} meV/at")
        if "forces_mae_meV_per_A" in row:
            parts.append(f"F {row['forces_mae_meV_per_A']:.1f} meV/Å")
        if "property_mae" in row:
            parts.append(f"MAE {row['property_mae']:.3g}")
        parts.append(f"lr {row['lr']:.1e}")
    if math.isfinite(seconds_left):
        parts.append(f"{max(seconds_left, 0) / 60:.1f} min left")
    return ", ".join(parts)


def _epoch_line(state: TrainState) -> str:
    row = state.history[-1] if state.history else {}
    text = f"epoch {state.epoch:4d}  {state.elapsed if not row else row['seconds']:7.0f} s"
    if row:
        text += (
            f"  lr {row['lr']:.1e}  train {row['train_loss']:.4g}  valid {row['valid_loss']:.4g}"
        )
        if "energy_per_atom_mae_meV" in row:
            text += f"  E {row['energy_per_atom_mae_meV']:.2f} meV/atom"
        if "forces_mae_meV_per_A" in row:
            text += f"  F {row['forces_mae_meV_per_A']:.1f} meV/Å"
        if "property_mae" in row:
            text += f"  MAE {row['property_mae']:.4g}"
    return text
