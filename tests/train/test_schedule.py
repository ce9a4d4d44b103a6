"""The learning rate that knows the deadline: warm-up, monotone decay, the minimum at the
deadline; a run that follows it ends at the deadline and not before, and a resumed run goes on
along the same curve. Time is a fake clock that advances one second per forward pass of the
model, so nothing sleeps and every run is deterministic."""

import copy
import math
import signal

import pytest
import torch

from euclidnn.data import load_dataset
from euclidnn.models import SchNet, SchNetConfig
from euclidnn.train import TrainConfig, TrainingInterrupted, fit, load_checkpoint
from euclidnn.train.schedule import DeadlineSchedule
from euclidnn.train.stats import data_statistics

SECONDS_PER_FORWARD = 1.0


class FakeClock:
    """Seconds that pass only when the model it watches runs a forward pass."""

    def __init__(self, model: torch.nn.Module, start: float = 0.0):
        self.now = start
        self.handle = model.register_forward_pre_hook(self.tick)

    def tick(self, module, inputs) -> None:
        self.now += SECONDS_PER_FORWARD

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ethanol():
    return load_dataset("ethanol")[:32]


def small_schnet(structures):
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


def deadline_config(minutes=1.0, max_epochs=100, **schedule):
    """Batches of 4 from 24 structures (6 steps per epoch), a validation after every step: a
    step and its validation take 2 fake seconds. The plateau rules are set to stop at the
    first validation without improvement, which a deadline schedule must ignore."""
    return TrainConfig.from_dict({
        "optimizer": {"batch_size": 4, "lr": 5e-3},
        "schedule": {
            "kind": "auto",  # cosine, since run.minutes is set
            "validations_per_epoch": 6,
            "warmup_fraction": 0.2,
            "early_stopping_patience": 1,
            "plateau_patience": 0,
            **schedule,
        },
        "run": {"minutes": minutes, "max_epochs": max_epochs, "checkpoint_minutes": 1e6},
    })  # fmt: skip


def curve_of(config: TrainConfig) -> DeadlineSchedule:
    budget = 60 * config.run.minutes
    return DeadlineSchedule(
        peak_lr=config.learning_rate,
        min_lr=config.schedule.min_lr,
        budget=budget,
        warmup=config.schedule.warmup_fraction * budget,
        shape=config.lr_schedule,
    )


def step_times_and_rates(history) -> list[tuple[float, float]]:
    """(elapsed seconds when the step began, its rate) for the last step before each
    validation: the row's time is the step's start plus its forward pass and the validation's
    (one batch of 8)."""
    return [(row["seconds"] - 2 * SECONDS_PER_FORWARD, row["lr"]) for row in history]


def curve_positions_and_rates(history, config: TrainConfig) -> list[tuple[float, float]]:
    """(where the step stood on the deadline curve, its rate), as :func:`step_times_and_rates`:
    its start time, or the share of run.max_epochs done before it (one step less than the row's
    epoch, 6 steps per epoch) times the budget where that is further."""
    budget, epochs = 60 * config.run.minutes, config.run.max_epochs
    return [
        (max(t, budget * (round(6 * row["epoch"]) - 1) / (6 * epochs)), lr)  # epoch: 4 digits
        for (t, lr), row in zip(step_times_and_rates(history), history)
    ]


class InterruptingClock(FakeClock):
    """A :class:`FakeClock` that sends this process a Ctrl-C (SIGINT) once it reads ``at``
    seconds or more: the run stops after the step in progress, as a user's Ctrl-C does."""

    def __init__(self, model: torch.nn.Module, at: float):
        super().__init__(model)
        self.at, self.sent = at, False

    def __call__(self) -> float:
        if self.now >= self.at and not self.sent:
            self.sent = True
            signal.raise_signal(signal.SIGINT)
        return self.now


@pytest.mark.parametrize("shape", ["cosine", "linear"])
def test_the_curve_warms_up_then_falls_monotonically_to_the_minimum_at_the_deadline(shape):
    curve = DeadlineSchedule(peak_lr=5e-3, min_lr=1e-5, budget=600.0, warmup=30.0, shape=shape)
    times = [0.1 * k for k in range(7001)]  # to 700 s, past the deadline
    rates = [curve(t) for t in times]
    assert rates[0] == 1e-5 and curve(30.0) == pytest.approx(5e-3, rel=1e-12)
    warmup, decay = rates[:301], rates[300:6001]
    assert all(a < b for a, b in zip(warmup, warmup[1:]))
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert curve(600.0) == 1e-5 and set(rates[6000:]) == {1e-5}
    assert max(abs(a - b) for a, b in zip(rates, rates[1:])) < 5e-3 * 0.1 / 30 + 1e-15
    assert DeadlineSchedule(5e-3, 1e-5, 600.0)(0.0) == pytest.approx(5e-3)  # no warm-up
    with pytest.raises(ValueError, match=r"warm-up 600.0 s must lie in \[0, budget 600.0 s\)"):
        DeadlineSchedule(5e-3, 1e-5, 600.0, warmup=600.0)


def test_a_run_with_minutes_follows_the_curve_and_ends_at_the_deadline_not_before(ethanol):
    model, lines = small_schnet(ethanol[:24]), []
    config = deadline_config()
    clock = FakeClock(model)
    result = fit(
        model, ethanol[:24], ethanol[24:], config, progress=False, log=lines.append, clock=clock
    )
    assert config.lr_schedule == "cosine"
    assert result.stop_reason == "time budget of 1 min spent"
    assert 60.0 <= result.seconds <= 60.0 + 3 * SECONDS_PER_FORWARD
    curve, rows = curve_of(config), step_times_and_rates(result.history)
    assert [lr for _, lr in rows] == [pytest.approx(curve(t), rel=1e-12) for t, _ in rows]
    rates = [lr for _, lr in rows]
    peak = rates.index(max(rates))
    assert rows[peak][0] <= 0.2 * 60 + 2 * SECONDS_PER_FORWARD
    assert rates[: peak + 1] == sorted(rates[: peak + 1])
    assert rates[peak:] == sorted(rates[peak:], reverse=True)
    last_time, last_rate = rows[-1]  # the last step ran at the deadline, at the minimum rate
    assert last_time >= 60.0 - 2 * SECONDS_PER_FORWARD and last_rate <= 1.01e-5
    # validations without improvement happened, and would have stopped a plateau run at once
    losses = [row["valid_loss"] for row in result.history]
    assert any(b >= min(losses[: i + 1]) for i, b in enumerate(losses[1:]))
    assert "learning rate: warm-up to 0.005 in 0.2 min, then cosine decay" in lines[0]


def test_a_resumed_run_goes_on_along_the_same_curve(ethanol, tmp_path):
    model = small_schnet(ethanol[:24])
    twin = copy.deepcopy(model)
    config = deadline_config(kind="linear")
    whole = fit(twin, ethanol[:24], ethanol[24:], config, progress=False, clock=FakeClock(twin))

    with pytest.raises(TrainingInterrupted):  # a Ctrl-C, not a lower max_epochs: that is a
        # shorter run, whose curve ends at its last epoch
        fit(
            model, ethanol[:24], ethanol[24:], config, tmp_path, progress=False,
            clock=InterruptingClock(model, at=24.0),
        )  # fmt: skip
    assert load_checkpoint(tmp_path / "last.ckpt").state.elapsed >= 24.0
    clock = FakeClock(model, start=1000.0)  # a new process: another origin of its clock
    resumed = fit(
        model,
        ethanol[:24],
        ethanol[24:],
        config,
        tmp_path,
        resume=True,
        progress=False,
        clock=clock,
    )
    assert config.lr_schedule == "linear" and resumed.stop_reason == whole.stop_reason
    pairs = step_times_and_rates(resumed.history)
    assert pairs == step_times_and_rates(whole.history)
    curve = curve_of(config)
    assert [lr for _, lr in pairs] == [pytest.approx(curve(t), rel=1e-12) for t, _ in pairs]
    for key, value in twin.state_dict().items():  # with a clock that repeats, even the weights
        assert torch.equal(model.state_dict()[key], value)

    longer = config.replace(run={"minutes": 2.0})
    clock = FakeClock(model, start=5.0)
    more = fit(
        model,
        ethanol[:24],
        ethanol[24:],
        longer,
        tmp_path,
        resume=True,
        progress=False,
        clock=clock,
    )
    new = step_times_and_rates(more.history)[len(pairs) :]
    assert new[0][0] > 60.0 and more.stop_reason == "time budget of 2 min spent"
    assert [lr for _, lr in new] == [pytest.approx(curve_of(longer)(t), rel=1e-12) for t, _ in new]


def test_a_run_the_epoch_limit_ends_first_decays_to_the_minimum_at_its_last_epoch(ethanol):
    """A budget of 100 minutes but 3 epochs of 12 fake seconds: the curve follows the share of
    the epochs done (on the clock alone the run would end early in its 20-minute warm-up),
    warms up, falls, and the last step runs near the minimum rate."""
    model = small_schnet(ethanol[:24])
    config = deadline_config(minutes=100.0, max_epochs=3, kind="cosine")
    result = fit(model, ethanol[:24], ethanol[24:], config, progress=False, clock=FakeClock(model))
    assert result.stop_reason == "reached max_epochs = 3" and result.seconds < 40.0
    rows, curve = curve_positions_and_rates(result.history, config), curve_of(config)
    assert [lr for _, lr in rows] == [pytest.approx(curve(t), rel=1e-12) for t, _ in rows]
    rates = [lr for _, lr in rows]
    peak = rates.index(max(rates))
    assert rates[peak] == pytest.approx(5e-3, rel=0.05) and 0 < peak < len(rates) - 1
    assert rates[peak:] == sorted(rates[peak:], reverse=True)
    assert rates[-1] < 0.02 * rates[peak]  # the last step: 1/18 of the curve before its end


def test_a_time_budget_without_max_epochs_has_no_epoch_limit(ethanol):
    """run.max_epochs unset: 1000 epochs without a budget, none with one, so the budget alone
    ends the run (on 32 frames the old default of 1000 ended a 30-minute run after 11); the
    curve follows the clock and the log names no epoch limit."""
    assert TrainConfig().run.epoch_limit == 1000
    config = deadline_config(minutes=0.5, max_epochs=None, kind="cosine")
    assert config.run.max_epochs is None and config.run.epoch_limit == math.inf
    model, lines = small_schnet(ethanol[:24]), []
    result = fit(
        model, ethanol[:24], ethanol[24:], config, progress=False, log=lines.append,
        clock=FakeClock(model),
    )  # fmt: skip
    assert result.stop_reason == "time budget of 0.5 min spent" and result.epochs > 2
    rows, curve = step_times_and_rates(result.history), curve_of(config)
    assert [lr for _, lr in rows] == [pytest.approx(curve(t), rel=1e-12) for t, _ in rows]
    deadline = next(line for line in lines if line.startswith("learning rate"))
    assert "epoch" not in deadline


def test_each_divergence_halves_the_whole_curve(ethanol):
    """The test_fit divergence (lr 0.3: the validation loss jumps without NaN), on a deadline:
    each recovery halves the curve's peak, and the steps after it follow the lowered curve."""
    model, lines = small_schnet(ethanol[:24]), []
    config = TrainConfig.from_dict({
        "optimizer": {"batch_size": 4, "lr": 0.3, "ema_decay": 0.0},
        "schedule": {"validations_per_epoch": 2, "warmup_fraction": 0.0, "kind": "linear"},
        "run": {"max_epochs": 1000, "minutes": 10.0},
    })  # fmt: skip
    clock = FakeClock(model)
    result = fit(
        model, ethanol[:24], ethanol[24:], config, progress=False, log=lines.append, clock=clock
    )
    lowered = [line for line in lines if line.startswith("validation loss")]
    assert lowered and "lowered to 0.15, best weights restored (recovery 1 " in lowered[0]
    scale, best = 1.0, math.inf
    for (seconds, lr), row in zip(
        curve_positions_and_rates(result.history, config), result.history
    ):
        curve = curve_of(config.replace(optimizer={"lr": 0.3 * scale}))
        assert lr == pytest.approx(curve(seconds), rel=1e-12)
        if row["valid_loss"] > 5 * best:
            scale /= 2
        best = min(best, row["valid_loss"])
    assert scale == 0.5 ** len(lowered)


def test_old_checkpoints_resume_with_the_plateau_schedule_they_had():
    from euclidnn.train.checkpoint import _migrated

    assert _migrated({"schedule": {"plateau_factor": 0.5}})["schedule"]["kind"] == "plateau"
    assert _migrated({"schedule": {"kind": "cosine"}})["schedule"]["kind"] == "cosine"
