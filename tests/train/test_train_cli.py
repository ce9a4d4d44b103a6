"""The commands: `euclidnn train`, `evaluate`, `learning-curve`; their outputs and their
refusals of bad input (each a message naming the file and what is wrong, exit status 2)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from euclidnn.cli.__main__ import main
from euclidnn.data import Graph, load_dataset
from euclidnn.models import load_model, predict

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
TINY = "model: {name: schnet, settings: {num_features: 8, num_interactions: 1, num_basis: 8}}\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SchNet trained for one epoch on 30 ethanol frames."""
    folder = tmp_path_factory.mktemp("run")
    (folder / "tiny.yaml").write_text(TINY + "run: {max_epochs: 1}\n")
    out = folder / "run"
    status = main(
        [
            "train",
            "ethanol",
            "--index",
            ":30",
            "--config",
            str(folder / "tiny.yaml"),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert status == 0
    return out


def test_train_writes_the_run_folder(trained):
    for name in ("model.safetensors", "last.ckpt", "log.csv", "config.yaml", "split.json"):
        assert (trained / name).is_file(), name
    split = json.loads((trained / "split.json").read_text())
    assert len(split["train"]) == 27 and len(split["valid"]) == 3
    assert not set(split["train"]) & set(split["valid"])


def test_evaluate_matches_an_independent_computation(trained, tmp_path, capsys):
    status = main(
        [
            "evaluate",
            str(trained / "model.safetensors"),
            "ethanol",
            "--index",
            "1990:",
            "--json",
            str(tmp_path / "m.json"),
            "--plots",
            str(tmp_path / "plots"),
        ]
    )
    assert status == 0
    values = json.loads((tmp_path / "m.json").read_text())
    for key in (
        "n_structures",
        "energy_mae_meV",
        "energy_rmse_meV",
        "energy_per_atom_mae_meV",
        "forces_mae_meV_per_A",
        "forces_rmse_meV_per_A",
        "forces_mae_meV_per_A_O",
    ):
        assert key in values, key
    model = load_model(trained / "model.safetensors")
    frames = load_dataset("ethanol")[1990:]
    energy_errors, force_errors = [], []
    for s in frames:
        out = predict(model, Graph.from_structure(s, model.config.r_max))
        energy_errors.append(out.energy.item() - s.energy)
        force_errors.append(out.forces.detach().numpy() - s.forces)
    assert values["n_structures"] == 10
    assert values["energy_mae_meV"] == pytest.approx(1000 * np.abs(energy_errors).mean(), rel=1e-4)
    assert values["forces_rmse_meV_per_A"] == pytest.approx(
        1000 * np.sqrt(np.mean(np.square(force_errors))), rel=1e-4
    )
    assert (tmp_path / "plots" / "parity.png").stat().st_size > 10_000
    assert (tmp_path / "plots" / "force_errors.png").stat().st_size > 5_000
    assert "force MAE" in capsys.readouterr().out


def run_error(argv, capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_train_refuses_a_non_empty_or_unwritable_out_and_bad_resumes(trained, tmp_path, capsys):
    message = run_error(["train", "ethanol", "--index", ":30", "--out", str(trained)], capsys)
    assert f"{trained}: run folder is not empty; use --resume or --overwrite" in message
    blocker = tmp_path / "file"
    blocker.write_text("")
    message = run_error(["train", "ethanol", "--out", str(blocker / "run")], capsys)
    assert f"{blocker} is a file, not a folder" in message
    message = run_error(["train", "ethanol", "--out", str(tmp_path / "none"), "--resume"], capsys)
    assert "nothing to resume" in message

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    data = (trained / "last.ckpt").read_bytes()
    (truncated / "last.ckpt").write_bytes(data[: len(data) // 2])
    message = run_error(["train", "ethanol", "--out", str(truncated), "--resume"], capsys)
    assert "last.ckpt: not a readable checkpoint (truncated or foreign" in message

    other_data = ["train", "ethanol", "--index", ":31", "--out", str(trained), "--resume"]
    assert "the run was trained on other structures" in run_error(other_data, capsys)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "last.ckpt").write_bytes((trained / "model.safetensors").read_bytes())
    message = run_error(["train", "ethanol", "--out", str(foreign), "--resume"], capsys)
    assert "not a euclidnn checkpoint" in message


def test_train_refuses_bad_data_and_splits(tmp_path, capsys):
    message = run_error(
        ["train", "ethanol", "--index", ":10", "--n-valid", "10", "--out", str(tmp_path / "a")],
        capsys,
    )
    assert "leave none for training" in message
    unlabelled = tmp_path / "unlabelled.xyz"
    unlabelled.write_text(
        '2\nProperties=species:S:1:pos:R:3 pbc="F F F"\nH 0 0 0\nH 0 0 0.74\n' * 3
    )
    message = run_error(["train", str(unlabelled), "--out", str(tmp_path / "b")], capsys)
    assert "unlabelled.xyz frame" in message and "no 'energy' label" in message
    for field, energy, force in (("energy", "nan", "1"), ("forces", "-1.0", "inf")):
        bad = tmp_path / f"bad-{field}.xyz"
        header = f'Properties=species:S:1:pos:R:3:forces:R:3 energy={energy} pbc="F F F"'
        bad.write_text(f"2\n{header}\nH 0 0 0 0 0 {force}\nH 0 0 0.74 0 0 -1\n")
        message = run_error(["train", str(bad), "--out", str(tmp_path / "d")], capsys)
        assert f"bad-{field}.xyz: frame 0: {field}: contains NaN or inf" in message
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    message = run_error(["train", str(empty), "--out", str(tmp_path / "c")], capsys)
    assert "empty.xyz" in message
    message = run_error(["train", str(tmp_path / "missing.xyz")], capsys)
    assert "missing.xyz: no such file" in message


def test_print_config_shows_the_resolved_config(tmp_path, capsys):
    assert main(["train", "ethanol", "--print-config", "--minutes", "2", "--model", "schnet"]) == 0
    text = capsys.readouterr().out
    assert "name: schnet" in text and "minutes: 2.0" in text and "ema_decay: 0.99" in text
    assert "num_interactions: 3" in text  # the model's training defaults, resolved
    assert "lr: 0.002" in text  # and SchNet's learning rate


@pytest.mark.skipif(not (SHARED / "qm9_20.db").is_file(), reason="../shared/data/qm9_20.db absent")
def test_a_qm9_property_trains_and_evaluates(tmp_path, capsys):
    # 16 molecules and 6 epochs: sized for the rate 5e-3 (not SchNet's default 2e-3)
    (tmp_path / "homo.yaml").write_text(
        TINY + "loss: {property: homo, property_per_atom: true}\n"
        "optimizer: {batch_size: 4, lr: 5.0e-3}\nrun: {max_epochs: 6}\ndata: {n_valid: 4}\n"
    )
    out = tmp_path / "run"
    db = str(SHARED / "qm9_20.db")
    assert (
        main(["train", db, "--config", str(tmp_path / "homo.yaml"), "--out", str(out), "--quiet"])
        == 0
    )
    rows = (out / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    first, last = (dict(zip(header, r.split(","))) for r in (rows[1], rows[-1]))
    assert float(last["valid_loss"]) < float(first["valid_loss"])
    assert (
        main(
            [
                "evaluate",
                str(out / "model.safetensors"),
                db,
                "--property",
                "homo",
                "--per-atom",
                "--json",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    values = json.loads((tmp_path / "m.json").read_text())
    assert values["n_structures"] == 20 and values["property_mae"] > 0


def dipole(numbers, centred):
    charges = {1: 0.3, 6: -0.2, 8: -0.5}
    return sum(charges[int(z)] * r for z, r in zip(numbers, centred))


def polarizability(numbers, centred):
    weights = {1: 0.1, 6: 0.4, 8: 0.3}
    return sum(weights[int(z)] * (np.outer(r, r) + np.eye(3)) for z, r in zip(numbers, centred))


@pytest.mark.parametrize(
    "label, head, lmax, transform",
    [
        (dipole, "1o", 1, lambda y, R: y @ R.T),
        (polarizability, "0e + 2e", 2, lambda y, R: R @ y @ R.T),
    ],
    ids=["dipole", "polarizability"],
)
def test_a_tensor_head_learns_an_equivariant_property(label, head, lmax, transform, tmp_path):
    """TensorHead on a NequIP trunk fits a dipole Σ q_Z r_i (1o) or a polarizability-like
    Σ w_Z (r_i r_iᵀ + I) (0e + 2e); the saved head reloads and stays equivariant."""
    from dataclasses import replace

    from euclidnn.cli.config_io import new_model
    from euclidnn.models import symmetric_matrix
    from euclidnn.o3 import rand_matrix
    from euclidnn.train import TrainConfig, data_statistics, fit

    frames = []
    for s in load_dataset("ethanol")[:24]:
        centred = s.positions - s.positions.mean(0)
        frames.append(replace(s, properties={"target": label(s.numbers, centred)}))
    config = TrainConfig.from_dict({
        "model": {"head": head, "settings": {"num_features": 4, "num_layers": 2, "lmax": lmax}},
        "loss": {"property": "target"},
        "optimizer": {"batch_size": 4, "lr": 1e-2},
        "run": {"max_epochs": 4, "dtype": "float64"},
    })  # fmt: skip
    stats = data_statistics(frames[:20], 4.0)
    model = new_model(config, stats).to(torch.float64)
    result = fit(model, frames[:20], frames[20:], config, tmp_path, progress=False)
    assert result.history[-1]["valid_loss"] < result.history[0]["valid_loss"]
    loaded = load_model(tmp_path / "model.safetensors")

    def predicted(graph):
        y = loaded(graph)[0]
        return symmetric_matrix(y) if y.shape[-1] == 6 else y

    graph = Graph.from_structure(frames[21], 4.0, torch.float64)
    R = rand_matrix(dtype=torch.float64)
    rotated = graph.deformed(graph.positions @ R.T, torch.zeros_like(graph.cell))
    assert torch.allclose(predicted(rotated), transform(predicted(graph), R), atol=1e-10)


def test_learning_curve_fits_each_size_and_reports_beta(tmp_path):
    (tmp_path / "tiny.yaml").write_text(
        "model: {name: nequip, settings: {num_features: 4, num_layers: 2}}\n"
        "optimizer: {batch_size: 4}\n"
    )
    out = tmp_path / "curve"
    argv = [
        "learning-curve",
        "ethanol",
        "--index",
        ":60",
        "--models",
        "nequip-l0,nequip-l1",
        "--sizes",
        "8,16,32",
        "--max-epochs",
        "2",
        "--n-valid",
        "4",
        "--n-test",
        "12",
        "--config",
        str(tmp_path / "tiny.yaml"),
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    table = json.loads((out / "learning_curve.json").read_text())
    assert table["metric"] == "forces_mae_meV_per_A" and table["n_test"] == 12
    for name in ("nequip-l0", "nequip-l1"):
        curve = table["models"][name]
        assert curve["sizes"] == [8, 16, 32] and len(curve["errors"]) == 3
        assert np.isfinite(curve["beta"]) and np.isfinite(curve["beta_error"])
        # two epochs are a cap, not convergence: the table says so for every fit
        assert [f["converged"] for f in curve["fits"]] == [False] * 3
        assert all(f["epochs"] == 2 and "max_epochs" in f["stop_reason"] for f in curve["fits"])
    assert (out / "learning_curve.png").stat().st_size > 10_000


def test_learning_curve_says_which_fits_converged(tmp_path, capsys):
    """A rate too small to move a float32 weight leaves the validation loss as it was, so early
    stopping ends each fit after its patience: converged, well before the epoch cap."""
    (tmp_path / "still.yaml").write_text(
        "model: {name: schnet, settings: {num_features: 4, num_interactions: 1}}\n"
        "optimizer: {batch_size: 4, lr: 1.0e-12}\n"
        "schedule: {early_stopping_patience: 2}\n"
    )
    out = tmp_path / "curve"
    argv = ["learning-curve", "ethanol", "--index", ":30", "--models", "schnet", "--sizes",
            "8,12", "--max-epochs", "40", "--n-valid", "4", "--n-test", "8", "--config",
            str(tmp_path / "still.yaml"), "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    fits = json.loads((out / "learning_curve.json").read_text())["models"]["schnet"]["fits"]
    assert [f["converged"] for f in fits] == [True, True]
    assert all(f["epochs"] < 40 and "early stopping" in f["stop_reason"] for f in fits)
    assert "every fit converged" in capsys.readouterr().out


@pytest.mark.slow  # ~9 s of fits
def test_learning_curve_evaluates_every_fit_on_further_test_sets(tmp_path):
    import ase.io

    from euclidnn.data.datasets import SHIPPED_DIR

    frames = ase.io.read(SHIPPED_DIR / "ethanol-gfn2xtb.xyz.gz", "1500:1510")
    ase.io.write(tmp_path / "later.xyz", frames)
    (tmp_path / "tiny.yaml").write_text(
        "model: {name: allegro, settings: {num_layers: 1, num_tensor_features: 4}}\n"
        "optimizer: {batch_size: 4}\n"
    )
    out = tmp_path / "curve"
    argv = ["learning-curve", "ethanol", "--index", ":40", "--models", "allegro",
            "--sizes", "8,16", "--max-epochs", "2", "--n-valid", "4", "--n-test", "8",
            "--test", str(tmp_path / "later.xyz"), "--config", str(tmp_path / "tiny.yaml"),
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    curve = json.loads((out / "learning_curve.json").read_text())["models"]["allegro"]
    later = curve["tests"][str(tmp_path / "later.xyz")]
    assert len(later["errors"]) == 2 and np.isfinite(later["beta"])
    # the further set's errors are those of the fit's own model on those frames
    from euclidnn.data.readers import read
    from euclidnn.train import TrainConfig, compare, metrics
    from euclidnn.train.loss import labelled_pairs

    best, loss = load_model(out / "allegro-N16" / "model.safetensors"), TrainConfig().loss
    pairs = labelled_pairs(read(tmp_path / "later.xyz"), best.cutoff, best.dtype, loss)
    found = metrics(compare(best, pairs, loss)[0])["forces_mae_meV_per_A"]
    assert later["errors"][1] == pytest.approx(found, rel=1e-9)
    assert later["errors"] != curve["errors"]


def test_the_python_api_example_runs(tmp_path):
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[2] / "examples" / "train_python_api.py"
    result = subprocess.run(
        [sys.executable, str(example), "--epochs", "1", "--n-train", "20", "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "test set: energy" in result.stdout
    assert (tmp_path / "model.safetensors").is_file()
