"""TrainConfig: strict validation, YAML through a safe loader, resolved configs round-trip."""

import numpy as np
import pytest

from euclidnn.cli.config_io import load_config, new_model
from euclidnn.train import TrainConfig, fit_shifts
from euclidnn.train.stats import DataStatistics


def test_defaults_round_trip_through_dict():
    config = TrainConfig.from_dict({"model": {"name": "schnet", "settings": {"num_features": 16}}})
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.model.settings == {"num_features": 16}
    assert TrainConfig.from_dict(None) == TrainConfig()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"optimiser": {}}, r"optimiser: unknown key; allowed: model, data, loss"),
        ({"optimizer": {"lr": "fast"}}, r"optimizer.lr: expected a number or null, got 'fast'"),
        ({"optimizer": {"name": "sgd"}}, r"optimizer.name: expected one of 'adam', 'adamw'"),
        ({"run": {"max_epochs": 2.5}}, r"run.max_epochs: expected an integer"),
        ({"run": {"dtype": "float16"}}, r"run.dtype: expected one of 'float32', 'float64'"),
        ({"loss": {"energy_per_atom": "yes"}}, r"loss.energy_per_atom: expected true/false"),
        ({"optimizer": {"lr": -1}}, r"optimizer.lr: must be positive, got -1"),
        ({"schedule": {"plateau_factor": 2}}, r"schedule.plateau_factor: must be in \(0, 1\)"),
        ({"loss": 3}, r"loss: expected a mapping"),
        ({"model": {"head": "1o"}}, r"model.head: a tensor head needs loss.property"),
        ({"schedule": {"kind": "step"}}, r"schedule.kind: expected one of 'auto', 'plateau'"),
        (
            {"schedule": {"kind": "cosine"}},
            r"schedule.kind: cosine and linear decay to the deadline run.minutes; set run.minutes",
        ),
        ({"schedule": {"warmup_fraction": 1}}, r"schedule.warmup_fraction: must be in \[0, 1\)"),
        ({"schedule": {"warmup_fraction": -0.1}}, r"schedule.warmup_fraction: must be in \[0, 1\)"),
        (
            {"run": {"minutes": 5}, "schedule": {"kind": "auto", "min_lr": 0.01}},
            r"schedule.min_lr: must be below the learning rate 0.005 it decays from, got 0.01",
        ),
    ],
)
def test_bad_keys_and_values_name_the_key_and_what_is_allowed(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(values)


def test_yaml_is_read_with_a_safe_loader_and_model_settings_are_checked(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("model:\n  name: nequip\n  settings: {lmax: 2}\nrun: {minutes: 1.5}\n")
    config = load_config(good)
    assert config.model.settings == {"lmax": 2} and config.run.minutes == 1.5

    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("run: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ValueError, match="unsafe.yaml: not valid YAML"):
        load_config(unsafe)

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model: {name: schnet, settings: {lmax: 2}}\n")
    with pytest.raises(
        ValueError, match=r"unknown.yaml: model.settings.lmax: not a setting of schnet"
    ):
        load_config(unknown)

    fitted = tmp_path / "fitted.yaml"
    fitted.write_text("model: {settings: {species: [1, 8]}}\n")
    with pytest.raises(ValueError, match="fitted on the training set"):
        load_config(fitted)


def test_model_is_built_with_the_fitted_statistics():
    stats = DataStatistics((1, 8), (-13.6, -432.0), 0.7, 5.5)
    config = TrainConfig.from_dict({"model": {"settings": {"num_features": 4, "lmax": 0}}})
    model = new_model(config, stats)
    assert model.config.species == (1, 8) and model.config.energy_shifts == (-13.6, -432.0)
    assert model.config.avg_num_neighbors == 5.5 and model.config.lmax == 0


def test_shift_fit_recovers_per_species_energies_when_compositions_determine_them():
    rng = np.random.default_rng(1)
    mu = {1: -13.6, 6: -1030.0, 8: -2040.0}
    numbers = [rng.choice([1, 6, 8], size=rng.integers(2, 12)) for _ in range(40)]
    energies = [sum(mu[int(z)] for z in n) for n in numbers]
    shifts, note = fit_shifts(numbers, energies)
    assert note is None
    assert all(abs(shifts[z] - mu[z]) < 1e-8 for z in mu)


def test_degenerate_shift_fit_shares_the_mean_and_still_fits_the_totals():
    ethanol = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])
    energies = [-300.0, -301.0, -299.5]
    shifts, note = fit_shifts([ethanol] * 3, energies)
    assert "determine only 1 of the 3" in note
    total = sum(shifts[int(z)] for z in ethanol)
    assert abs(total - np.mean(energies)) < 1e-9
    assert max(shifts.values()) - min(shifts.values()) < 1e-9  # shared equally


def test_a_config_file_may_leave_the_deadline_to_the_command_line(tmp_path, capsys):
    from euclidnn.cli.__main__ import main

    path = tmp_path / "linear.yaml"
    path.write_text("schedule: {kind: linear, warmup_fraction: 0.1}\n")
    assert load_config(path, {"run": {"minutes": 2.0}}).lr_schedule == "linear"
    with pytest.raises(ValueError, match=r"linear.yaml: schedule.kind: cosine and linear decay"):
        load_config(path)
    assert (
        main(["train", "ethanol", "--config", str(path), "--minutes", "2", "--print-config"]) == 0
    )
    assert "kind: linear" in capsys.readouterr().out
    assert (
        main(["train", "ethanol", "--minutes", "2", "--schedule", "plateau", "--print-config"]) == 0
    )
    assert "kind: plateau" in capsys.readouterr().out
