"""TrainConfig: every setting of a training run, in one place, with its default and advice.

A run is configured by six frozen sections — ``model``, ``data``, ``loss``, ``optimizer``,
``schedule``, ``run`` — each documented field by field below; this file is the reference for
every key a YAML config may hold. :meth:`TrainConfig.from_dict` validates a nested mapping
(e.g. parsed from YAML with a safe loader): unknown keys and wrong types are errors that name
the key and what is allowed. :meth:`TrainConfig.to_dict` gives back the full resolved config.

>>> cfg = TrainConfig.from_dict({"model": {"name": "schnet"}, "optimizer": {"lr": 1e-3}})
>>> cfg.model.name, cfg.optimizer.lr, cfg.loss.forces_weight
('schnet', 0.001, 1.0)
>>> TrainConfig.from_dict({"optimizer": {"learning_rate": 1e-3}})
Traceback (most recent call last):
...
ValueError: optimizer.learning_rate: unknown key; allowed: name, lr, weight_decay, batch_size, grad_clip, ema_decay
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from euclidnn.units import unit_factor

__all__ = [
    "DEFAULT_LR",
    "ModelSection",
    "DataSection",
    "LossSection",
    "OptimizerSection",
    "ScheduleSection",
    "RunSection",
    "TrainConfig",
    "check_type",
]


#: the learning rate of each model when ``optimizer.lr`` is unset
DEFAULT_LR = {"nequip": 5e-3, "schnet": 2e-3, "allegro": 5e-3}


@dataclass(frozen=True)
class ModelSection:
    """Which model, and its hyperparameters.

    Attributes:
        name: ``"nequip"`` (equivariant, default), ``"allegro"`` (equivariant, strictly local)
            or ``"schnet"`` (invariant).
        settings: fields of :class:`~euclidnn.models.NequIPConfig`,
            :class:`~euclidnn.models.AllegroConfig` or :class:`~euclidnn.models.SchNetConfig`
            to change from the training defaults, e.g. ``{lmax: 2, num_features: 32}``.
            ``species``, ``energy_shifts``, ``energy_scales`` and ``avg_num_neighbors`` are
            fitted on the training set and cannot be set here.
            The training defaults (used where a key is absent) are sized for minutes on a CPU:
            NequIP ``lmax=1, num_features=32, num_layers=3, r_max=4.0``; Allegro ``lmax=1,
            num_tensor_features=16, num_layers=2, latent_dim=64, r_max=5.0``; SchNet
            ``num_features=64, num_interactions=3, r_max=5.0``.
        head: ``None`` (default): the model predicts the energy (or the scalar property of
            ``loss.property``). An irreps string — ``"1o"`` (dipole), ``"0e + 2e"``
            (polarizability) — trains a :class:`~euclidnn.models.TensorHead` on a NequIP trunk
            for the tensor property named by ``loss.property``.
    """

    name: Literal["nequip", "schnet", "allegro"] = "nequip"
    settings: dict = field(default_factory=dict)
    head: str | None = None


@dataclass(frozen=True)
class DataSection:
    """How the data files are read and split.

    Attributes:
        n_train: use this many training structures (default ``None`` = all that remain after
            the validation split); drawn with ``run.seed``, nested as it grows.
        n_valid: validation structures taken from the training file when no validation file
            is given (default ``None`` = 10 % of the file, at least 1 and at most 1000).
        energy_unit, length_unit, forces_unit, stress_unit: units of the files (default: the
            file's metadata, else eV and Å; e.g. ``kcal/mol`` for MD17).
        energy_key, forces_key, stress_key: names of the labels in the files (default
            ``energy``, ``forces``, ``stress``); a key set here must be in the files.
        max_force_rms: refuse to train on data whose RMS force component exceeds this, in
            eV/Å (default 10; ``null`` = no limit). Sampled structures of real systems have
            0.1–3 eV/Å; 10 and more is a wrong unit (kcal/mol/Å read as eV/Å gives 23× the
            true value). Raise it only for data that really hold such forces.
    """

    n_train: int | None = None
    n_valid: int | None = None
    energy_unit: str | None = None
    length_unit: str | None = None
    forces_unit: str | None = None
    stress_unit: str | None = None
    energy_key: str | None = None
    forces_key: str | None = None
    stress_key: str | None = None
    max_force_rms: float | None = 10.0


@dataclass(frozen=True)
class LossSection:
    """The loss, ρ (ΔE/n)² + w_F (1/3n) Σ_i ‖ΔF_i‖² + w_σ (ΔσV/n)² averaged over a batch.

    Attributes:
        energy_weight: ρ (default 1.0). Energies enter per atom when ``energy_per_atom``.
        forces_weight: weight of the force term, mean over force components (default 1.0).
        stress_weight: weight of the stress term, compared as virial per atom σV/n in eV
            (default 1.0); used only when the training data have stress.
        energy_per_atom: compare energies per atom, so batches of mixed sizes weigh alike
            (default True).
        property: train on this per-structure property of the data instead of energy and
            forces (default ``None``), e.g. QM9's ``homo``, ``energy_U0``, or a dipole vector.
        property_per_atom: the model's sum over atoms is divided by the number of atoms before
            it is compared with ``property`` (an intensive property such as a HOMO energy;
            default False).
    """

    energy_weight: float = 1.0
    forces_weight: float = 1.0
    stress_weight: float = 1.0
    energy_per_atom: bool = True
    property: str | None = None
    property_per_atom: bool = False


@dataclass(frozen=True)
class OptimizerSection:
    """The optimizer and what acts on the weights every step.

    Attributes:
        name: ``"adam"`` (default) or ``"adamw"``.
        lr: initial learning rate (default ``None`` = the training default of ``model.name``,
            :data:`DEFAULT_LR`: 5e-3 for NequIP and Allegro; 2e-3 for SchNet, which trains
            the 29-element ``many-elements`` set, where 5e-3 diverges after 15 epochs, and
            keeps pace with 5e-3 per epoch on ethanol).
            :attr:`TrainConfig.learning_rate` is the rate in effect.
        weight_decay: decoupled weight decay for AdamW (default 0).
        batch_size: structures per step, summed over processes (default 8).
        grad_clip: clip the gradient norm to this (default 10; 0 = off).
        ema_decay: exponential moving average of the weights used for validation and the saved
            model (default 0.99, NequIP's; 0 = off). The raw weights are kept in the checkpoint.
    """

    name: Literal["adam", "adamw"] = "adam"
    lr: float | None = None
    weight_decay: float = 0.0
    batch_size: int = 8
    grad_clip: float = 10.0
    ema_decay: float = 0.99


@dataclass(frozen=True)
class ScheduleSection:
    """How the learning rate changes, and when to stop.

    Two schedules. *plateau*: the rate stays at ``optimizer.lr`` and drops by ``plateau_factor``
    whenever the validation loss stops improving; early stopping ends the run. *cosine* or
    *linear* (a deadline, needs ``run.minutes``): the rate rises from ``min_lr`` to
    ``optimizer.lr`` in the first ``warmup_fraction`` of the budget, then decays to ``min_lr``
    exactly when the budget is spent, as a function of the elapsed training time (see
    :class:`~euclidnn.train.schedule.DeadlineSchedule`); the run uses its whole budget: early
    stopping and the plateau keys do not apply, and only a divergence (below) or
    ``run.max_epochs`` ends it sooner (the curve then follows the share of ``run.max_epochs``
    done wherever that is further on than the clock, so it still reaches ``min_lr`` at the
    run's end). A resumed run keeps the schedule it started with; resumed
    with a new ``run.minutes``, it follows the curve of the new budget from its elapsed time on.

    Attributes:
        kind: ``"plateau"`` (default), ``"cosine"``, ``"linear"`` or ``"auto"`` (cosine when
            ``run.minutes`` is set, plateau otherwise). Plateau stays the default because it
            won where measured: NequIP on the shipped ethanol set (1000/250, test frames
            1500–1999, 5 minutes on a shared 2-core CPU) reached a test force MAE of 41.8 meV/Å
            on plateau (whose rate never dropped in 5 minutes) against 50.9 meV/Å with cosine
            (a fast-changing load: single runs, noisy), and again on a quiet machine (2
            threads): 23.2 against 25.6 meV/Å. At budgets this short the model is far from
            converged and a rate kept high learns more than one that anneals. At 30 minutes
            (same data, quiet machine, 2 threads, one run each) they tie for NequIP: 10.4
            meV/Å on plateau (which lowered its rate five times and used the whole budget)
            against 10.8 with cosine; SchNet on plateau reached the rate's floor and stopped
            at 18 of its 30 minutes (11.1 meV/Å), while cosine used them all (9.9).
        warmup_fraction: the share of the budget spent warming up, for cosine and linear
            (default 0.05; 0 = none).
        plateau_factor: multiply the learning rate by this when the validation loss has not
            improved for ``plateau_patience`` validations (default 0.5).
        plateau_patience: validations without improvement before the rate drops (default 5).
        min_lr: the rate never drops below this; on plateau, reaching it with no improvement
            for ``plateau_patience`` more validations ends the run; cosine and linear end there
            (default 1e-5).
        early_stopping_patience: on plateau, end the run after this many validations without
            improvement (default 30; 0 = never).
        validations_per_epoch: validate (and log, and maybe reduce the rate) this many times
            per epoch (default 1; raise it for big training sets and short budgets).
        divergence_factor: a validation loss above this many times the best one so far is a
            divergence (default 5; 0 = off): a loss that grows without ever becoming NaN,
            which the NaN check does not catch. The run goes back to the best point — raw and
            averaged weights and the optimizer's state as they were at the best validation —
            and multiplies the learning rate in effect by ``plateau_factor`` (not below
            ``min_lr``; cosine and linear multiply the peak of their curve by it, so the rate
            stays on a lowered curve to the deadline), logging one line that says so. A NaN or
            infinite validation loss still ends the run at once.
        divergence_recoveries: recoveries allowed (default 3); the next divergence goes back
            to the best point and ends the run, with a reason that says so.
    """

    kind: Literal["auto", "plateau", "cosine", "linear"] = "plateau"
    warmup_fraction: float = 0.05
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    min_lr: float = 1e-5
    early_stopping_patience: int = 30
    validations_per_epoch: int = 1
    divergence_factor: float = 5.0
    divergence_recoveries: int = 3


@dataclass(frozen=True)
class RunSection:
    """How long, how reproducibly, and how often to save.

    Attributes:
        minutes: wall-clock budget of the whole fit, validation included, summed over resumes
            (default ``None`` = no budget); training stops when it is spent, even mid-epoch. To
            continue a finished run, resume it with a larger budget.
        max_epochs: at most this many epochs (default ``None``: 1000 without ``minutes``, no
            limit with them, so that a time budget is used whole — on 32 frames, 1000 epochs
            ended a 30-minute run after 11; see :attr:`epoch_limit`).
        seed: seeds the weights, the split and the data order (default 0).
        dtype: ``"float32"`` (default, fast) or ``"float64"``.
        checkpoint_minutes: also write ``last.ckpt`` mid-epoch at this interval (default 5).
        checkpoint_every: also write ``last.ckpt`` every this many steps (default 0 = off).
        threads: CPU threads for PyTorch (default ``None`` = PyTorch's choice).
    """

    minutes: float | None = None
    max_epochs: int | None = None
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"
    checkpoint_minutes: float = 5.0
    checkpoint_every: int = 0
    threads: int | None = None

    @property
    def epoch_limit(self) -> float:
        """The epochs a run may take: ``max_epochs``, else 1000 without a time budget and no
        limit (``inf``) with one.

        >>> RunSection().epoch_limit, RunSection(minutes=30).epoch_limit
        (1000, inf)
        >>> RunSection(minutes=30, max_epochs=50).epoch_limit
        50
        """
        if self.max_epochs is not None:
            return self.max_epochs
        return math.inf if self.minutes is not None else 1000


@dataclass(frozen=True)
class TrainConfig:
    """The whole run: six sections, each with defaults (see their docstrings)."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    run: RunSection = field(default_factory=RunSection)

    @property
    def learning_rate(self) -> float:
        """``optimizer.lr``, or when it is unset the training default of ``model.name``.

        >>> schnet = TrainConfig.from_dict({"model": {"name": "schnet"}})
        >>> TrainConfig().learning_rate, schnet.learning_rate, schnet.optimizer.lr
        (0.005, 0.002, None)
        """
        return self.optimizer.lr if self.optimizer.lr is not None else DEFAULT_LR[self.model.name]

    @property
    def lr_schedule(self) -> Literal["plateau", "cosine", "linear"]:
        """``schedule.kind`` with ``"auto"`` resolved: cosine with a budget, plateau without.

        >>> auto = TrainConfig.from_dict({"schedule": {"kind": "auto"}})
        >>> auto.lr_schedule, auto.replace(run={"minutes": 5}).lr_schedule
        ('plateau', 'cosine')
        """
        if self.schedule.kind != "auto":
            return self.schedule.kind
        return "plateau" if self.run.minutes is None else "cosine"

    def __post_init__(self) -> None:
        deadline = self.schedule.kind in ("cosine", "linear")
        checks = [
            (
                "schedule.kind",
                not deadline or self.run.minutes is not None,
                "cosine and linear decay to the deadline run.minutes; set run.minutes, or use 'plateau' or 'auto'",
            ),
            (
                "schedule.warmup_fraction",
                0 <= self.schedule.warmup_fraction < 1,
                "must be in [0, 1)",
            ),
            (
                "schedule.min_lr",
                self.lr_schedule == "plateau" or self.schedule.min_lr < self.learning_rate,
                f"must be below the learning rate {self.learning_rate:g} it decays from",
            ),
            (
                "optimizer.lr",
                self.optimizer.lr is None or self.optimizer.lr > 0,
                "must be positive",
            ),
            ("optimizer.batch_size", self.optimizer.batch_size >= 1, "must be ≥ 1"),
            ("optimizer.grad_clip", self.optimizer.grad_clip >= 0, "must be ≥ 0"),
            ("optimizer.ema_decay", 0 <= self.optimizer.ema_decay < 1, "must be in [0, 1)"),
            ("optimizer.weight_decay", self.optimizer.weight_decay >= 0, "must be ≥ 0"),
            ("schedule.plateau_factor", 0 < self.schedule.plateau_factor < 1, "must be in (0, 1)"),
            ("schedule.plateau_patience", self.schedule.plateau_patience >= 0, "must be ≥ 0"),
            ("schedule.min_lr", self.schedule.min_lr >= 0, "must be ≥ 0"),
            ("schedule.early_stopping_patience", self.schedule.early_stopping_patience >= 0, "≥ 0"),
            ("schedule.validations_per_epoch", self.schedule.validations_per_epoch >= 1, "≥ 1"),
            (
                "schedule.divergence_factor",
                self.schedule.divergence_factor == 0 or self.schedule.divergence_factor > 1,
                "must be 0 (off) or > 1",
            ),
            ("schedule.divergence_recoveries", self.schedule.divergence_recoveries >= 0, "≥ 0"),
            ("run.minutes", self.run.minutes is None or self.run.minutes > 0, "must be positive"),
            ("run.max_epochs", self.run.max_epochs is None or self.run.max_epochs >= 1, "≥ 1"),
            ("run.checkpoint_minutes", self.run.checkpoint_minutes > 0, "must be positive"),
            ("run.checkpoint_every", self.run.checkpoint_every >= 0, "must be ≥ 0"),
            ("run.threads", self.run.threads is None or self.run.threads >= 1, "must be ≥ 1"),
            ("data.n_train", self.data.n_train is None or self.data.n_train >= 1, "must be ≥ 1"),
            ("data.n_valid", self.data.n_valid is None or self.data.n_valid >= 1, "must be ≥ 1"),
            (
                "data.max_force_rms",
                self.data.max_force_rms is None or self.data.max_force_rms > 0,
                "must be positive (eV/Å) or null",
            ),
        ]
        checks += [
            (f"loss.{name}", getattr(self.loss, name) >= 0, "must be ≥ 0")
            for name in ("energy_weight", "forces_weight", "stress_weight")
        ]
        for key, ok, message in checks:
            if not ok:
                raise ValueError(f"{key}: {message}, got {_get(self, key)!r}")
        for quantity in ("energy", "length", "forces", "stress"):
            unit = getattr(self.data, f"{quantity}_unit")
            if unit is None:
                continue
            try:
                unit_factor(unit, quantity)
            except ValueError as error:
                raise ValueError(f"data.{quantity}_unit: {error}") from None
        if self.model.head is not None and self.loss.property is None:
            raise ValueError("model.head: a tensor head needs loss.property (the label it fits)")
        if self.model.head is not None and self.model.name != "nequip":
            raise ValueError(
                "model.head: tensor heads sit on a NequIP trunk; set model.name: nequip"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TrainConfig:
        """Validate a nested mapping into a config; missing keys take their defaults.

        Raises:
            ValueError: an unknown key, a value of the wrong type, or one out of range, naming
                the key (``section.key``) and what is allowed.
        """
        return _build(cls, values or {}, "")

    def to_dict(self) -> dict[str, Any]:
        """The full resolved config as a nested dict (what ``--print-config`` shows)."""
        return dataclasses.asdict(self)

    def replace(self, **sections: Mapping[str, Any]) -> TrainConfig:
        """A copy with some keys of some sections changed, validated like :meth:`from_dict`.

        >>> TrainConfig().replace(run={"seed": 3}).run.seed
        3
        """
        merged = self.to_dict()
        for name, values in sections.items():
            if name not in merged:
                raise ValueError(f"{name}: unknown section; allowed: {', '.join(merged)}")
            merged[name] = {**merged[name], **values}
        return TrainConfig.from_dict(merged)


def _get(config, key: str):
    for part in key.split("."):
        config = getattr(config, part)
    return config


def _build(cls, values, prefix: str):
    if not isinstance(values, Mapping):
        where = prefix.rstrip(".") or "the config"
        raise ValueError(f"{where}: expected a mapping of keys to values, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise ValueError(f"{prefix}{key}: unknown key; allowed: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name not in values:
            continue
        hint, value, key = hints[name], values[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key + ".")
        else:
            kwargs[name] = check_type(key, hint, value)
    try:
        return cls(**kwargs)
    except ValueError as error:
        if prefix and not str(error).startswith(prefix):
            raise ValueError(f"{prefix.rstrip('.')}: {error}") from None
        raise


def check_type(key: str, hint, value):
    """``value`` if it has type ``hint`` (ints accepted for floats), else a ValueError naming
    ``key`` and the expected type.

    >>> check_type("model.settings.num_features", int | None, 32)
    32
    >>> check_type("model.settings.num_features", int, "32")
    Traceback (most recent call last):
    ...
    ValueError: model.settings.num_features: expected an integer, got '32'
    """
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if typing.get_origin(option) is Literal:
            if value in typing.get_args(option):
                return value
            continue
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option in (bool, str) and isinstance(value, option):
            return value
        if option is dict and isinstance(value, Mapping):
            return dict(value)
    allowed = " or ".join(_describe(option) for option in options)
    raise ValueError(f"{key}: expected {allowed}, got {value!r}")


def _describe(option) -> str:
    if typing.get_origin(option) is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(option))
    if option is type(None):
        return "null"
    return {float: "a number", int: "an integer", bool: "true/false", str: "a string"}.get(
        option, "a mapping"
    )
