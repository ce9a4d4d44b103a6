"""The training loop: it learns, it resumes exactly after a kill, several processes reach the
weights of one, a NaN loss stops cleanly, a loss that grows goes back to the best point, and
bad data are refused by name."""

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from euclidnn.data import Structure, load_dataset
from euclidnn.models import SchNet, SchNetConfig, load_model
from euclidnn.train import TrainConfig, TrainingDiverged, compare, fit, load_checkpoint
from euclidnn.train.loss import labelled_pairs
from euclidnn.train.stats import data_statistics

FAST = {
    "optimizer": {"batch_size": 4, "lr": 5e-3},
    "run": {"max_epochs": 3, "checkpoint_every": 1},
}


def small_schnet(structures, r_max=4.0, dtype=torch.float64):
    stats = data_statistics(structures, r_max)
    config = SchNetConfig(
        species=stats.species,
        r_max=r_max,
        num_features=8,
        num_interactions=2,
        num_basis=8,
        energy_shifts=stats.energy_shifts,
        energy_scales=stats.energy_scale,
    )
    return SchNet(config).to(dtype)


@pytest.fixture(scope="module")
def ethanol():
    return load_dataset("ethanol")[:40]


def test_fit_lowers_the_validation_loss_and_writes_a_loadable_best_model(ethanol, tmp_path):
    model = small_schnet(ethanol[:24])
    result = fit(
        model, ethanol[:24], ethanol[24:32], TrainConfig.from_dict(FAST), tmp_path, progress=False
    )
    losses = [row["valid_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert result.steps == 3 * 6 and result.epochs == 3
    best = load_model(tmp_path / "model.safetensors")
    assert best.config == model.config
    assert (tmp_path / "log.csv").read_text().count("\n") == 1 + len(result.history)
    assert not list(tmp_path.glob("*.tmp"))


def test_periodic_data_with_stress_train_with_the_stress_term(tmp_path):
    rng = np.random.default_rng(0)
    structures = []
    for _ in range(12):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.set_cell(atoms.cell * (1 + 0.02 * rng.standard_normal()), scale_atoms=True)
        atoms.calc = EMT()
        structures.append(
            Structure.from_ase(
                atoms,
                energy=atoms.get_potential_energy(),
                forces=atoms.get_forces(),
                stress=atoms.get_stress(voigt=False),
            )
        )
    model = small_schnet(structures, r_max=3.0)
    config = TrainConfig.from_dict({**FAST, "run": {"max_epochs": 4}})
    result = fit(model, structures[:8], structures[8:], config, tmp_path, progress=False)
    assert "stress_mae_meV_per_A3" in result.history[-1]
    assert result.history[-1]["valid_loss"] < result.history[0]["valid_loss"]


def _train_command(out, data_index=":40"):
    return [
        sys.executable,
        "-m",
        "euclidnn",
        "train",
        "ethanol",
        "--index",
        data_index,
        "--model",
        "schnet",
        "--config",
        str(out.parent / "config.yaml"),
        "--dtype",
        "float64",
        "--threads",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]


@pytest.mark.slow  # ~20 s; resume is also checked by the CLI Ctrl-C test
def test_resume_after_a_kill_mid_epoch_ends_with_the_same_weights(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "model: {name: schnet, settings: {num_features: 8, num_interactions: 2, num_basis: 8}}\n"
        "optimizer: {batch_size: 2}\n"
        "run: {max_epochs: 3, checkpoint_every: 1}\n"
    )
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_train_command(reference), check=True, capture_output=True)

    process = subprocess.Popen(
        _train_command(killed), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline, state = time.time() + 120, None
    while time.time() < deadline and process.poll() is None:
        try:
            state = load_checkpoint(killed / "last.ckpt").state
        except (FileNotFoundError, ValueError):
            state = None
        if state is not None and state.epoch == 1 and state.batch > 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert state is not None and state.epoch == 1 and state.batch > 3, "not killed mid-epoch"
    was = load_checkpoint(killed / "last.ckpt").state
    assert was.epoch < 3

    subprocess.run(_train_command(killed) + ["--resume"], check=True, capture_output=True)
    a = load_checkpoint(reference / "last.ckpt")
    b = load_checkpoint(killed / "last.ckpt")
    assert a.state.step == b.state.step
    worst = max(
        (a.model.state_dict()[k] - b.model.state_dict()[k]).abs().max().item()
        for k in a.model.state_dict()
    )
    assert worst <= 1e-12
    best_a = load_model(reference / "model.safetensors").state_dict()
    best_b = load_model(killed / "model.safetensors").state_dict()
    assert max((best_a[k] - best_b[k]).abs().max().item() for k in best_a) <= 1e-12


# slow: under the full default suite it failed twice in a day on this machine (a start-up race
# in the run folder, fixed; then one SIGABRT of a rank at exit, not reproduced in 11 runs
# alone, 5 of them beside two busy processes; a barrier before destroy_process_group added).
# `make test-slow` runs it; CI must not turn red on a flake while the second cause is open.
@pytest.mark.slow
def test_two_processes_reach_the_weights_of_one(tmp_path):
    pytest.importorskip("torch.distributed.run")
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    (tmp_path / "config.yaml").write_text(
        "model: {name: nequip, settings: {num_features: 4, num_layers: 2}}\n"
        "optimizer: {batch_size: 6}\nrun: {max_epochs: 2}\n"
    )
    one, two = tmp_path / "one", tmp_path / "two"
    command = _train_command(one, ":30")
    command[command.index("schnet")] = "nequip"
    subprocess.run(command, check=True, capture_output=True)
    # --standalone: a free port of its own (the default 29500 may be held by another job)
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    command = _train_command(two, ":30")
    command[command.index("schnet")] = "nequip"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(launcher + command[1:], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    a, b = load_checkpoint(one / "last.ckpt"), load_checkpoint(two / "last.ckpt")
    worst = max(
        (a.model.state_dict()[k] - b.model.state_dict()[k]).abs().max().item()
        for k in a.model.state_dict()
    )
    assert worst <= 1e-10
    # validation counted every structure once: the same metrics as one process
    assert a.state.history[-1]["valid_loss"] == pytest.approx(
        b.state.history[-1]["valid_loss"], rel=1e-9
    )


def test_a_diverging_loss_stops_naming_the_batch_and_keeps_the_last_good_checkpoint(
    ethanol, tmp_path
):
    model = small_schnet(ethanol[:16])
    config = TrainConfig.from_dict({"optimizer": {"batch_size": 4}, "run": {"max_epochs": 1}})
    fit(model, ethanol[:16], ethanol[16:20], config, tmp_path, progress=False)
    before = (tmp_path / "last.ckpt").read_bytes()
    poisoned = list(ethanol[:16])
    poisoned[5] = dataclasses.replace(poisoned[5], energy=1e200)
    names = [f"data.xyz frame {i}" for i in range(16)]
    with pytest.raises(TrainingDiverged, match=r"epoch 2, batch \d.*data.xyz frame 5"):
        fit(
            model,
            poisoned,
            ethanol[16:20],
            config.replace(run={"max_epochs": 2}),
            tmp_path,
            resume=True,
            train_names=names,
            progress=False,
        )
    assert (tmp_path / "last.ckpt").read_bytes() == before
    assert load_checkpoint(tmp_path / "last.ckpt").state.epoch == 1


def test_bad_training_data_is_refused_by_name(ethanol):
    model = small_schnet(ethanol[:8])
    no_energy = [Structure(s.numbers, s.positions, forces=s.forces) for s in ethanol[:4]]
    with pytest.raises(ValueError, match="training structure 0: no 'energy' label"):
        fit(model, no_energy, ethanol[4:6], progress=False)
    some_forces = [ethanol[0], Structure(ethanol[1].numbers, ethanol[1].positions, energy=-1.0)]
    with pytest.raises(
        ValueError, match="training structure 1: no 'forces' label .*all or for none"
    ):
        fit(model, some_forces, ethanol[4:6], progress=False)
    water = Structure(
        [8, 1, 1, 17], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [3, 0, 0]], energy=-1.0
    )
    with pytest.raises(ValueError, match=r"validation structure 0: elements \[17\] are not among"):
        fit(model, ethanol[:4], [water], progress=False)
    with pytest.raises(ValueError, match="training set is empty"):
        fit(model, [], ethanol[4:6], progress=False)


def test_tensorboard_events_are_written_when_tensorboard_is_installed(ethanol, tmp_path):
    pytest.importorskip("tensorboard", reason="optional extra: pip install euclidnn[tensorboard]")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = small_schnet(ethanol[:12])
    config = TrainConfig.from_dict({"optimizer": {"batch_size": 4}, "run": {"max_epochs": 2}})
    result = fit(model, ethanol[:12], ethanol[12:16], config, tmp_path, progress=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    losses = [e.value for e in events.Scalars("valid_loss")]
    assert losses == pytest.approx([row["valid_loss"] for row in result.history])


def diverging_config(**schedule):
    """A tiny SchNet at a learning rate so high that the validation loss jumps to ~1e9 at the
    sixth validation, without ever becoming NaN (seeded: the autouse fixture)."""
    return TrainConfig.from_dict({
        "optimizer": {"batch_size": 4, "lr": 0.3, "ema_decay": 0.0},
        "schedule": {"validations_per_epoch": 2, **schedule},
        "run": {"max_epochs": 6},
    })  # fmt: skip


def test_a_loss_that_grows_without_nan_goes_back_to_the_best_point_at_a_lower_rate(ethanol):
    model, lines = small_schnet(ethanol[:24]), []
    result = fit(
        model, ethanol[:24], ethanol[24:32], diverging_config(), progress=False, log=lines.append
    )
    (line,) = [line for line in lines if line.startswith("validation loss")]
    assert re.fullmatch(
        r"validation loss \S+ is \S+× the best \S+: learning rate lowered to 0.15, best weights "
        r"restored \(recovery 1 of 3\)",
        line,
    ), line
    losses = [row["valid_loss"] for row in result.history]
    worst = max(range(len(losses)), key=losses.__getitem__)
    assert losses[worst] > 1e3 * min(losses[:worst])  # it did diverge, and without NaN
    assert [row["lr"] for row in result.history[worst + 1 :]] == [0.15] * (len(losses) - worst - 1)
    assert max(losses[worst + 1 :]) < 2 * min(losses)  # and trained on from the best point
    assert result.stop_reason == "reached max_epochs = 6"


def test_when_the_recoveries_are_spent_the_run_stops_at_the_best_point(ethanol, tmp_path):
    model = small_schnet(ethanol[:24])
    config = diverging_config(divergence_recoveries=0)
    result = fit(model, ethanol[:24], ethanol[24:32], config, tmp_path, progress=False)
    assert "the training diverges; lower optimizer.lr" in result.stop_reason
    assert "after 0 recoveries (best weights restored)" in result.stop_reason
    # the model and last.ckpt hold the best weights (EMA off: raw = validated)
    valid = labelled_pairs(ethanol[24:32], model.cutoff, model.dtype, config.loss)
    _, terms = compare(model, valid, config.loss)
    assert terms.weighted(config.loss).item() == pytest.approx(result.best_loss, rel=1e-12)
    saved = load_checkpoint(tmp_path / "last.ckpt")
    for key, value in model.state_dict().items():
        assert torch.equal(saved.model.state_dict()[key], value)
        assert torch.equal(saved.best.model[key], value)
