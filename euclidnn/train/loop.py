"""``fit``: the training loop, as named steps over one :class:`_Run` that holds the run.

    _setup → for each epoch: _epoch (for each batch: _step → on schedule _validate →
    _stop_rule, _checkpoint) → _finish

A validation keeps the best weights, or, when the loss has diverged, goes back to them
(:func:`_recover`). The learning rate follows a plateau schedule (stepped by each validation)
or, with a time budget, a curve of the elapsed time that ends at the deadline (set before each
step from the time all processes agree on; :mod:`euclidnn.train.schedule`). Ctrl-C during the
epochs stops the loop after the step in progress, writes the checkpoint and raises
:class:`TrainingInterrupted` (a second Ctrl-C stops at once). One process, or several under
``torchrun`` (``torch.distributed``
initialised by the caller): every process sees the same global batches — batch b of epoch e is
the same list of structures whatever the number of processes — and takes its share of each; the
loss is normalised by the counts of the whole batch, so N processes reach the weights one
process reaches. Validation counts each structure once. Only rank 0 writes files.
"""

from __future__ import annotations

import csv
import io
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from euclidnn.data.graph import Graph
from euclidnn.data.loader import collate_batch
from euclidnn.data.structure import Structure
from euclidnn.data.targets import Targets
from euclidnn.files import write_text
from euclidnn.models import Potential
from euclidnn.models.io import describe_model, save_model
from euclidnn.train.checkpoint import Snapshot, TrainState, load_checkpoint, save_checkpoint
from euclidnn.train.config import TrainConfig
from euclidnn.train.ema import EMA
from euclidnn.train.loss import LossTerms, labelled_pairs, loss_terms, model_outputs
from euclidnn.train.metrics import Comparison, compare, metrics
from euclidnn.train.schedule import DeadlineSchedule

__all__ = [
    "fit",
    "FitResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "check_labels",
    "check_training_data",
    "epoch_order",
]


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`fit` between two steps, after writing the checkpoint.

    Attributes:
        epoch: epochs done (as :class:`~euclidnn.train.checkpoint.TrainState` counts).
        batch: batches of the next epoch done.
        num_batches: batches per epoch.
        checkpoint: ``last.ckpt``, which resumes the run from here (``None`` without ``out``).

    >>> str(TrainingInterrupted(2, 3, 4, None)), str(TrainingInterrupted(2, 0, 4, None))
    ('interrupted at epoch 3, batch 3 of 4', 'interrupted after epoch 2')
    """

    def __init__(self, epoch: int, batch: int, num_batches: int, checkpoint: Path | None):
        where = f"at epoch {epoch + 1}, batch {batch} of {num_batches}"
        super().__init__(f"interrupted {where if batch else f'after epoch {epoch}'}")
        self.epoch, self.batch, self.num_batches = epoch, batch, num_batches
        self.checkpoint = checkpoint


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

    @property
    def converged(self) -> bool:
        """Whether the fit stopped by its own rule — early stopping, or the rate at its floor
        with no improvement — rather than by ``run.minutes``, ``run.max_epochs``, an
        interruption, a divergence or a deadline schedule's end."""
        return self.stop_reason.endswith(_CONVERGED)


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
    for label, values in fields.items():
        missing = [name for name, v in zip(names, values) if v is None]
        required = label in ("energy", loss.property)
        if missing and (required or len(missing) < len(values)):
            raise ValueError(
                f"{missing[0]}: no {label!r} label ({len(missing)} of {len(values)} {role} "
                f"structures lack it{'' if required else '; give it for all or for none'})"
            )


def check_training_data(
    model: Potential,
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


@dataclass
class _Run:
    """One fit while it runs: what it trains and with what, the data, where it writes, and
    the loop's counters. ``state`` is what a checkpoint keeps of the loop (with ``best``);
    everything else is rebuilt by :func:`_setup`."""

    cfg: TrainConfig
    model: nn.Module
    trained: nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None  # None under a deadline
    ema: EMA
    group: _Group
    train_items: list[tuple[Graph, Targets]]
    valid_items: list[tuple[Graph, Targets]]  # this process's share
    train_names: list[str]
    out: Path | None
    say: Callable[[str], None]  # log on rank 0, silent elsewhere
    clock: Callable[[], float] = time.perf_counter  # seconds, from any origin
    deadline: DeadlineSchedule | None = None  # the learning rate when it follows a deadline
    state: TrainState = field(default_factory=TrainState)
    best: Snapshot | None = None  # weights and optimizer at the best validation
    board: Any = None  # TensorBoard SummaryWriter (rank 0, when installed)
    num_batches: int = 0  # per epoch
    validate_after: set[int] = field(default_factory=set)  # batches of an epoch
    budget: float = math.inf  # seconds
    now: float = 0.0  # elapsed seconds when the last batch ended, the same in every process
    started: float = 0.0  # clock() at which the run's elapsed time was 0
    last_checkpoint: float = 0.0  # clock() of the last checkpoint
    train_loss_sum: float = 0.0  # training losses since the last validation
    train_loss_count: int = 0
    ctrl_c: bool = False  # this process got Ctrl-C (set by the signal handler)
    interrupted: bool = False  # some process got it: all stop after the same batch

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files (rank 0, with a run folder)."""
        return self.group.rank == 0 and self.out is not None

    def elapsed(self) -> float:
        return self.clock() - self.started


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
    clock: Callable[[], float] = time.perf_counter,
) -> FitResult:
    """Train ``model`` on ``train``, validating on ``valid``; write the run to ``out``.

    The run folder (when ``out`` is given) receives ``model.safetensors`` (the best validation
    model, EMA weights, loadable by :func:`~euclidnn.models.load_model`), ``last.ckpt`` (to
    resume), ``log.csv`` (one row per validation) and TensorBoard events when ``tensorboard``
    is installed. With ``resume=True`` the run continues from ``out/last.ckpt`` exactly where
    it stopped (same weights, optimizer, EMA, schedule, data order). The learning rate starts
    at ``config.learning_rate`` (``optimizer.lr``, or the default of ``model.name``) and follows
    ``config.lr_schedule``: on plateau (the default) it drops when the validation loss stops
    improving; with cosine or linear (which need ``run.minutes``) it warms up, then decays to
    ``schedule.min_lr`` at the deadline or at ``run.max_epochs``, whichever comes first.

    Ctrl-C (SIGINT, in the main thread) stops the loop after the step in progress, writes
    ``last.ckpt`` and raises :class:`TrainingInterrupted`; a second Ctrl-C stops at once.

    The run stops at ``run.max_epochs``, when ``run.minutes`` are spent (even mid-epoch), or
    when the validation loss is NaN; on plateau also after
    ``schedule.early_stopping_patience`` validations without improvement, or when the learning
    rate sits at ``schedule.min_lr`` without improvement.
    A validation loss above ``schedule.divergence_factor`` × the best one so far is a
    divergence: the weights (raw and EMA) and the optimizer go back to the best validation,
    the learning rate is multiplied by ``schedule.plateau_factor``, and one line is logged;
    after ``schedule.divergence_recoveries`` recoveries the next divergence ends the run (at
    the best point).

    A resumed run continues its schedule: the plateau scheduler's state is in the checkpoint,
    and a deadline's rate is computed from the recorded elapsed time, so with the same budget
    the curve lr(t) goes on where it stopped (continuous across the resume; the weights are not
    bitwise those of an uninterrupted run, since which step falls at which time varies).

    Args:
        model: a :class:`~euclidnn.models.Potential` (SchNet, NequIP, TensorHead); its
            ``cutoff``, ``species``, ``dtype`` and ``device`` are used.
        train, valid: labelled structures (eV, Å).
        config: the run's settings (:class:`~euclidnn.train.TrainConfig`; default: defaults).
        out: the run folder (created); ``None`` writes nothing.
        resume: continue the run in ``out``.
        train_names, valid_names: how errors name each structure (e.g. "file.xyz frame 3").
        progress: show a progress bar per epoch.
        log: where progress lines go (rank 0 only).
        clock: seconds from any origin, for the budget, the deadline schedule and the
            checkpoint interval (default :func:`time.perf_counter`; tests pass a fake one).

    Raises:
        TrainingDiverged: the loss became NaN/inf (naming the epoch and the batch's structures).
        TrainingInterrupted: Ctrl-C, after the checkpoint of the point reached.
        ValueError: unusable data or checkpoint (naming the structure or file).
    """
    names = (
        list(train_names or [f"training structure {i}" for i in range(len(train))]),
        list(valid_names or [f"validation structure {i}" for i in range(len(valid))]),
    )
    run = _setup(model, train, valid, names, config or TrainConfig(), out, resume, log, clock)
    stop_reason = ""
    with _interruptible(run):
        while run.state.epoch < run.cfg.run.epoch_limit and not stop_reason:
            stop_reason = _epoch(run, progress)
            if run.interrupted:  # _epoch wrote the checkpoint
                checkpoint = run.out / "last.ckpt" if run.writes else None
                state = run.state
                raise TrainingInterrupted(state.epoch, state.batch, run.num_batches, checkpoint)
        stop_reason = stop_reason or f"reached max_epochs = {run.cfg.run.epoch_limit}"
        if not run.state.history or run.state.history[-1]["step"] != run.state.step:
            _validate(run)  # the weights the run ends with are validated (and logged) once
            _checkpoint(run)
    return _finish(run, stop_reason)


@contextmanager
def _interruptible(run: _Run) -> Iterator[None]:
    """While the loop runs, the first Ctrl-C sets ``run.ctrl_c`` (the loop stops after the
    step in progress, so no step is left half done) and a second raises KeyboardInterrupt at
    once. Only in the main thread, where Python delivers signals; the previous handler is put
    back after."""
    previous = signal.getsignal(signal.SIGINT)
    main = threading.current_thread() is threading.main_thread()
    if not main or previous in (signal.SIG_IGN, None):
        yield
        return

    def handler(signum, frame):
        if run.ctrl_c:
            raise KeyboardInterrupt
        run.ctrl_c = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _setup(
    model: nn.Module,
    train: Sequence[Structure],
    valid: Sequence[Structure],
    names: tuple[list[str], list[str]],
    cfg: TrainConfig,
    out: str | os.PathLike | None,
    resume: bool,
    log: Callable[[str], None],
    clock: Callable[[], float],
) -> _Run:
    """Check the data, build the optimizer, schedule and EMA, restore them on ``resume``,
    and work out the epoch's validation points and the time budget."""
    group = _Group()
    check_training_data(model, train, names[0], cfg, "training")
    check_training_data(model, valid, names[1], cfg, "validation")
    train_items = labelled_pairs(train, model.cutoff, model.dtype, cfg.loss)
    valid_items = labelled_pairs(valid, model.cutoff, model.dtype, cfg.loss)
    optimizer_class = torch.optim.AdamW if cfg.optimizer.name == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.optimizer.weight_decay
    )
    run = _Run(
        cfg=cfg,
        model=model,
        trained=nn.parallel.DistributedDataParallel(model) if group.size > 1 else model,
        optimizer=optimizer,
        scheduler=_plateau(optimizer, cfg),
        ema=EMA(model, cfg.optimizer.ema_decay),
        group=group,
        train_items=train_items,
        valid_items=valid_items[group.rank :: group.size],
        train_names=names[0],
        out=Path(out) if out is not None else None,
        say=log if group.rank == 0 else _silent,
        clock=clock,
    )
    if resume:
        _restore(run)
    if run.writes:
        run.out.mkdir(parents=True, exist_ok=True)
        run.board = _tensorboard(run.out)
    run.num_batches = math.ceil(len(train_items) / cfg.optimizer.batch_size)
    per_epoch = min(cfg.schedule.validations_per_epoch, run.num_batches)
    run.validate_after = {round(run.num_batches * (k + 1) / per_epoch) for k in range(per_epoch)}
    run.budget = math.inf if cfg.run.minutes is None else 60 * cfg.run.minutes
    run.now, run.deadline = run.state.elapsed, _deadline(cfg, run.state.lr_scale)
    if run.deadline is not None:
        limit = cfg.run.epoch_limit
        run.say(
            run.deadline.describe()
            + (f", or at epoch {limit} if that comes first" if math.isfinite(limit) else "")
        )
    run.started = clock() - run.state.elapsed
    run.last_checkpoint = clock()
    return run


def _plateau(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """The plateau scheduler of a run that uses one, else ``None``."""
    if cfg.lr_schedule != "plateau":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        factor=cfg.schedule.plateau_factor,
        patience=cfg.schedule.plateau_patience,
        min_lr=cfg.schedule.min_lr,
    )


def _deadline(cfg: TrainConfig, lr_scale: float) -> DeadlineSchedule | None:
    """The learning-rate curve of a run that follows a deadline (peak lowered by the
    divergence recoveries' ``lr_scale``), else ``None``."""
    if cfg.lr_schedule == "plateau":
        return None
    budget = 60 * cfg.run.minutes
    return DeadlineSchedule(
        peak_lr=cfg.learning_rate * lr_scale,
        min_lr=cfg.schedule.min_lr,
        budget=budget,
        warmup=cfg.schedule.warmup_fraction * budget,
        shape=cfg.lr_schedule,
    )


def _on_curve(run: _Run) -> float:
    """Where the run stands on its deadline curve, in seconds of the budget: its elapsed time,
    or the share of ``run.max_epochs`` it has trained times the budget when that is further,
    so that a run the epoch limit ends before the clock does still decays to ``min_lr`` at its
    end (a budget of 10 minutes with 1000 epochs done in 6 stopped at 0.36 × the peak rate)."""
    epochs = run.state.epoch + run.state.batch / run.num_batches
    return max(run.now, run.deadline.budget * epochs / run.cfg.run.epoch_limit)


def _epoch(run: _Run, progress: bool) -> str:
    """Train on the rest of the epoch, validating and checkpointing on schedule; a reason to
    stop, or ''."""
    state, batch_size = run.state, run.cfg.optimizer.batch_size
    order = epoch_order(len(run.train_items), run.cfg.run.seed, state.epoch)
    bar = tqdm(
        total=run.num_batches,
        initial=state.batch,
        desc=f"epoch {state.epoch + 1}",
        disable=not (progress and run.group.rank == 0),
        leave=False,
        dynamic_ncols=True,
    )
    stop_reason = ""
    while state.batch < run.num_batches and not stop_reason and not run.interrupted:
        _step(run, order[state.batch * batch_size : (state.batch + 1) * batch_size])
        validating = state.batch in run.validate_after
        if validating:
            stop_reason = _validate(run)
        bar.update(1)
        if state.step % 10 == 0 or validating:
            bar.set_postfix_str(_postfix(run))
        # every process takes part in this all-reduce, on every batch, so that they agree on
        # the time (a deadline's learning rate, the budget) and a Ctrl-C stops them all after
        # the same batch
        shared = run.group.sum(torch.tensor([run.elapsed(), run.ctrl_c], dtype=torch.float64))
        run.now, run.interrupted = shared[0].item() / run.group.size, shared[1].item() > 0
        if run.now > run.budget and not stop_reason:
            stop_reason = f"time budget of {run.cfg.run.minutes:g} min spent"
        every = run.cfg.run.checkpoint_every
        due = (every and state.step % every == 0) or (
            run.clock() - run.last_checkpoint > 60 * run.cfg.run.checkpoint_minutes
        )
        if due and not stop_reason and not run.interrupted:
            _checkpoint(run)
    bar.close()
    if state.batch == run.num_batches:
        state.epoch, state.batch = state.epoch + 1, 0
        run.say(_epoch_line(state))
    _checkpoint(run)
    return stop_reason


def _step(run: _Run, indices: list[int]) -> None:
    """One optimizer step on the global batch ``indices``, of which this process takes its
    share; the EMA follows. Raises :class:`TrainingDiverged` on a NaN or infinite loss."""
    cfg, group = run.cfg, run.group
    mine = indices[group.rank :: group.size]
    # a process without a structure in this (last, short) batch still takes part in the
    # collective calls, with one structure weighted by zero
    weight = 1.0 if mine else 0.0
    graph, targets = collate_batch([run.train_items[i] for i in mine or indices[:1]])
    graph, targets = graph.to(run.model.device), targets.to(run.model.device)
    prediction = model_outputs(run.trained, graph, targets, cfg.loss, training=True)
    terms = loss_terms(prediction, graph, targets, cfg.loss)
    terms = LossTerms(terms.sums * weight, terms.counts * weight)
    counts = group.sum(terms.counts)
    loss = terms.weighted(cfg.loss, counts) * group.size
    total = group.sum(loss.detach()).item() / group.size
    if not math.isfinite(total):
        raise _diverged(run, total, [run.train_names[i] for i in indices])
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.optimizer.grad_clip > 0:
        nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optimizer.grad_clip)
    if run.deadline is not None:  # the rate at the step's start (the last batch's end)
        _set_lr(run.optimizer, run.deadline(_on_curve(run)))
    run.optimizer.step()
    run.ema.update(run.model)
    run.state.step += 1
    run.state.batch += 1
    run.train_loss_sum += total
    run.train_loss_count += 1


def _diverged(run: _Run, total: float, names: list[str]) -> TrainingDiverged:
    last = run.out / "last.ckpt" if run.out is not None else "not written (no out)"
    if run.out is not None and not (run.out / "last.ckpt").is_file():
        last = "not written yet (it diverged before the first)"
    return TrainingDiverged(
        f"the training loss became {total} at epoch {run.state.epoch + 1}, batch "
        f"{run.state.batch + 1} (structures: {', '.join(names[:8])}"
        f"{', …' if len(names) > 8 else ''}); the last good checkpoint is {last}; "
        "lower optimizer.lr or check these structures' labels"
    )


def _validate(run: _Run) -> str:
    """Validate the EMA weights and log the row; keep the best point, or go back to it after a
    divergence; step the schedule. A reason to stop, or ''."""
    state, factor = run.state, run.cfg.schedule.divergence_factor
    loss, row = _measure(run)
    best = state.best_loss
    if loss < best:
        state.best_loss, state.best_epoch, state.bad_validations = loss, row["epoch"], 0
        run.best = Snapshot.take(run.model, run.ema, run.optimizer)
        if run.writes:
            with run.ema.applied(run.model):
                save_model(run.model, run.out / "model.safetensors")
    else:
        state.bad_validations += 1
    diverged = factor > 0 and math.isfinite(loss) and loss > factor * best
    stop_reason = _recover(run, loss, best) if diverged else ""
    if not diverged and run.scheduler is not None:  # a diverged loss says nothing of a plateau
        run.scheduler.step(loss)
    if run.writes:
        _write_csv(run.out / "log.csv", state.history)
    if run.board is not None:
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, float):
                run.board.add_scalar(key, value, state.step)
        run.board.flush()
    return stop_reason or _stop_rule(run, loss, row["lr"])


def _measure(run: _Run) -> tuple[float, dict[str, Any]]:
    """The validation loss of the EMA weights, over all processes, and the history row
    (appended to ``state.history``); the running training loss starts again."""
    state = run.state
    with run.ema.applied(run.model):
        part, terms = compare(run.model, run.valid_items, run.cfg.loss, batch_size=32)
    comparison = Comparison.concatenate(run.group.gather(part))
    total = LossTerms(run.group.sum(terms.sums), run.group.sum(terms.counts))
    loss = total.weighted(run.cfg.loss).item()
    values = metrics(comparison)
    row = {
        "epoch": round(state.epoch + state.batch / run.num_batches, 4),
        "step": state.step,
        "seconds": round(run.elapsed(), 2),
        "lr": run.optimizer.param_groups[0]["lr"],
        "train_loss": run.train_loss_sum / max(run.train_loss_count, 1),  # since last validation
        "valid_loss": loss,
        **{k: values[k] for k in _LOGGED if k in values},
    }
    state.history.append(row)
    run.train_loss_sum, run.train_loss_count = 0.0, 0
    return loss, row


def _recover(run: _Run, loss: float, best: float) -> str:
    """Go back to the best point after a divergence and lower the learning rate (a deadline's
    whole curve); once the recoveries are spent, go back and stop. A reason to stop, or ''."""
    state, schedule = run.state, run.cfg.schedule
    lr = max(run.optimizer.param_groups[0]["lr"] * schedule.plateau_factor, schedule.min_lr)
    if run.best is not None:  # None only when resumed from a checkpoint that lacks it
        run.best.restore(run.model, run.ema, run.optimizer)
    what = f"validation loss {loss:.3g} is {loss / best:.3g}× the best {best:.3g}"
    restored = "best weights restored" if run.best is not None else "no best weights kept"
    if state.recoveries >= schedule.divergence_recoveries:
        run.say(f"{what}: {restored}, no recoveries left")
        return (
            f"{what} after {state.recoveries} recoveries ({restored}): the training diverges; "
            "lower optimizer.lr"
        )
    state.recoveries += 1
    if run.deadline is not None:
        state.lr_scale *= schedule.plateau_factor
        run.deadline = _deadline(run.cfg, state.lr_scale)
        lr = run.deadline(_on_curve(run))
    _set_lr(run.optimizer, lr)
    run.say(
        f"{what}: learning rate lowered to {lr:.2g}, {restored} "
        f"(recovery {state.recoveries} of {schedule.divergence_recoveries})"
    )
    return ""


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _stop_rule(run: _Run, loss: float, lr: float) -> str:
    """A reason to stop after a validation at learning rate ``lr``, or ''. A deadline
    schedule stops only at the deadline (or on a NaN loss)."""
    state, schedule = run.state, run.cfg.schedule
    if not math.isfinite(loss):
        return f"validation loss is {loss}"
    if run.deadline is not None:
        return ""
    patience = schedule.early_stopping_patience
    if patience and state.bad_validations >= patience:
        return f"no improvement in {patience} validations {_CONVERGED[0]}"
    if lr <= schedule.min_lr and state.bad_validations > schedule.plateau_patience:
        return f"learning rate at its minimum {schedule.min_lr:g} {_CONVERGED[1]}"
    return ""


def _checkpoint(run: _Run) -> None:
    """Write ``last.ckpt`` (rank 0, with a run folder); restart the checkpoint clock."""
    run.state.elapsed = run.elapsed()
    if run.writes:
        save_checkpoint(
            run.out / "last.ckpt",
            run.model,
            run.cfg.to_dict(),
            run.state,
            run.ema.state_tensors(),
            run.ema.num_updates,
            run.optimizer,
            run.scheduler,
            best=run.best,
        )
    run.last_checkpoint = run.clock()


def _finish(run: _Run, stop_reason: str) -> FitResult:
    if run.board is not None:
        run.board.close()
    state = run.state
    best = min(state.history, key=lambda r: r["valid_loss"])
    run.say(
        f"stopped: {stop_reason}; best validation loss {state.best_loss:.4g} at epoch {best['epoch']}"
    )
    return FitResult(
        best_loss=state.best_loss,
        best_metrics={k: v for k, v in best.items() if k in _LOGGED},
        epochs=state.epoch + state.batch / run.num_batches,
        steps=state.step,
        seconds=run.elapsed(),
        stop_reason=stop_reason,
        history=state.history,
    )


def _silent(message: str) -> None:
    """The log of a process other than rank 0."""


#: how the reasons of the plateau schedule's own stopping rules end (FitResult.converged)
_CONVERGED = ("(early stopping)", "and no improvement")

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


def _restore(run: _Run) -> None:
    """Load ``out/last.ckpt`` into the run: weights, optimizer, schedule, EMA, best point, RNG.
    A plateau schedule resumed from a run that followed a deadline starts afresh at the rate
    the optimizer holds."""
    if run.out is None:
        raise ValueError("resume: give the run folder (out)")
    path = run.out / "last.ckpt"
    ck = load_checkpoint(path)
    if describe_model(ck.model) != describe_model(run.model):
        raise ValueError(
            f"{path}: the checkpoint's model ({describe_model(ck.model)[0]}) is not "
            "the model given to fit; build it from the checkpoint"
        )
    run.model.load_state_dict(ck.model.state_dict())
    try:
        run.optimizer.load_state_dict(ck.optimizer)
        if run.scheduler is not None and ck.scheduler is not None:
            run.scheduler.load_state_dict(ck.scheduler)
        run.ema.load(ck.ema, ck.ema_updates)
    except (KeyError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: cannot restore the training state ({err})") from err
    torch.set_rng_state(ck.rng)
    run.state, run.best = ck.state, ck.best
    run.say(f"resumed from {path}: epoch {run.state.epoch}, batch {run.state.batch}")


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
    write_text(path, text.getvalue())


def _postfix(run: _Run) -> str:
    """The progress bar's text: training loss so far, the last validation, time left."""
    count, history = run.train_loss_count, run.state.history
    parts = [f"loss {run.train_loss_sum / count:.3g}"] if count else []
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
    seconds_left = run.budget - run.elapsed()
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
