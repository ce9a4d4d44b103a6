"""The peers' runners of ``bench/train_accuracy.py`` (its docstring lists the recipes and the
deviations): nequip (NequIP), nequip-allegro (Allegro), schnetpack (SchNet) and MACE, each
trained by its own command-line tool in a logged subprocess on the same files and budget, and
tested on test.xyz by its own ASE calculator with the same metrics as ours.

MACE runs from its own venv (mace-torch 0.3.14 pins e3nn 0.4.4); its test predictions come
from this file run there:

    .venv-mace/bin/python bench/train_peers.py MODEL TEST.xyz OUT.npz   # energies and forces
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent  # the bench venv's scripts: euclidnn, nequip-*, spktrain


def wall_clock_callback(path: str, package: str):
    """A Lightning callback (``package`` "lightning" or "pytorch_lightning") appending JSON rows
    to ``path``: after each validation the epochs done, the seconds since training started and
    the logged metrics; a last row (``"end": true``) when training ends."""
    import importlib

    module = "lightning.pytorch" if package == "lightning" else "pytorch_lightning"
    base = importlib.import_module(module).Callback

    class WallClock(base):
        def on_train_start(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking and hasattr(self, "start"):
                self.write(trainer, end=False)

        def on_train_end(self, trainer, pl_module):
            self.write(trainer, end=True)

        def write(self, trainer, end):
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
            row = {
                "epochs": trainer.global_step / max(trainer.num_training_batches, 1),
                "seconds": time.perf_counter() - self.start,
                "end": end,
                **metrics,
            }
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")

    return WallClock()


class Budget:
    """A wall-clock budget read from a tool's log: ``seconds`` from the first line holding
    ``start``, extended to the first line holding ``epoch`` (so that a budget shorter than an
    epoch still leaves a checkpoint), and over only once the log has been quiet for 2 s (the
    checkpoint written after an epoch's line is then complete)."""

    def __init__(self, start: str, epoch: str, seconds: float):
        self.start, self.epoch, self.seconds = start, epoch, seconds
        self.deadline: float | None = None

    def over(self, log: Path) -> bool:
        text = log.read_text(errors="replace")
        if self.deadline is None and self.start in text:
            self.deadline = time.time() + self.seconds
        quiet = time.time() - log.stat().st_mtime > 2.0
        done = self.deadline is not None and time.time() > self.deadline
        return done and quiet and self.epoch in text.split(self.start, 1)[1]


def run_logged(command: list[str], log: Path, threads: int, limit: float, cwd=None,
               budget: Budget | None = None, **env) -> float:  # fmt: skip
    """Run ``command`` with its output in ``log`` and ``env`` added to the environment; its
    wall-clock seconds. Killed after ``limit`` seconds (the budget plus a margin for setup), or
    when ``budget`` says its time is up (for a tool without a wall-clock option: MACE)."""
    env = dict(os.environ, **env, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env["CUDA_VISIBLE_DEVICES"] = ""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ {' '.join(command)}  > {log}", flush=True)
    started = time.perf_counter()
    deadline = started + limit
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        while process.poll() is None and time.perf_counter() < deadline:
            time.sleep(1.0)
            if budget and budget.over(log):
                break
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            code = f"stopped after {time.perf_counter() - started:.0f} s"
        else:
            code = process.returncode
    if code != 0:
        print(f"  exit {code}; the last lines of {log}:\n" + "".join(open(log).readlines()[-15:]))
    return time.perf_counter() - started


def test_metrics(test_file: Path, energy, forces) -> dict:
    """``euclidnn evaluate``'s metrics of predicted energies [n_frames] (eV) and forces
    (per frame [n_atoms, 3], eV/Å) against the labelled frames of ``test_file``."""
    from ase.io import read

    from euclidnn.train.metrics import Comparison, metrics

    frames = read(test_file, ":")
    comparison = Comparison(
        num_atoms=np.array([len(a) for a in frames]),
        numbers=np.concatenate([a.numbers for a in frames]),
        energy=np.asarray(energy, dtype=float),
        energy_ref=np.array([a.get_potential_energy() for a in frames]),
        forces=np.concatenate(forces),
        forces_ref=np.concatenate([a.get_forces() for a in frames]),
    )
    return metrics(comparison)


def predictions(calculator, test_file: Path) -> tuple[list[float], list[np.ndarray]]:
    """Energies and forces of an ASE calculator on the frames of ``test_file``."""
    from ase.io import read

    energy, forces = [], []
    for atoms in read(test_file, ":"):
        predicted = atoms.copy()
        predicted.calc = calculator
        energy.append(predicted.get_potential_energy())
        forces.append(predicted.get_forces())
    return energy, forces


def lightning_log(path: Path, key: str, scale: float) -> dict:
    """Curve (minutes, validation force MAE in meV/Å), epochs and seconds from the callback's
    rows."""
    rows = [json.loads(line) for line in open(path)] if path.is_file() else []
    curve = [(r["seconds"] / 60, scale * r[key]) for r in rows if not r["end"] and key in r]
    last = rows[-1] if rows else {"epochs": 0.0, "seconds": float("nan")}
    return {"curve": curve, "epochs": last["epochs"], "train_seconds": last["seconds"]}


def budget_string(minutes: float) -> str:
    """Lightning's ``max_time`` as DD:HH:MM:SS."""
    seconds = max(round(60 * minutes), 1)
    return f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ---- nequip and nequip-allegro ------------------------------------------------------------------


def nequip_model(symbols: list[str], ours: dict | None) -> dict:
    """configs/tutorial.yaml's NequIPGNNModel; ``ours`` (our resolved NequIP settings) sets
    the size to ours and drops the ZBL term (ours has none)."""
    size = {"r_max": 5.0, "num_layers": 4, "l_max": 1, "num_features": 32, "num_bessels": 8,
            "polynomial_cutoff_p": 6, "parity": True, "radial_mlp_depth": 2,
            "radial_mlp_width": 64}  # fmt: skip
    if ours:
        size = {"r_max": ours["r_max"], "num_layers": ours["num_layers"], "l_max": ours["lmax"],
                "num_features": ours["num_features"], "num_bessels": ours["num_basis"],
                "polynomial_cutoff_p": ours["polynomial_p"], "parity": ours["parity"],
                "radial_mlp_depth": ours["radial_mlp_depth"],
                "radial_mlp_width": ours["radial_mlp_width"]}  # fmt: skip
    model = {"_target_": "nequip.model.NequIPGNNModel", "seed": 0, "model_dtype": "float32",
             "type_names": symbols, "bessel_trainable": False, **size,
             "per_type_energy_scales": "${training_data_stats:per_type_forces_rms}"}  # fmt: skip
    if not ours:
        model["pair_potential"] = {"_target_": "nequip.nn.pair_potential.ZBL", "units": "metal",
                                   "chemical_species": symbols}  # fmt: skip
    return model


def allegro_model(symbols: list[str], ours: dict | None) -> dict:
    """allegro's configs/tutorial.yaml AllegroModel; ``ours`` (our resolved Allegro settings)
    sets the size to ours and drops the ZBL term."""
    width = ours["latent_dim"] if ours else 64  # the tutorial's num_scalar_features
    model = {
        "_target_": "allegro.model.AllegroModel", "seed": 0, "model_dtype": "float32",
        "type_names": symbols, "r_max": ours["r_max"] if ours else 5.0,
        "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
                                  "num_bessels": ours["num_basis"] if ours else 8,
                                  "bessel_trainable": False,
                                  "polynomial_cutoff_p": ours["polynomial_p"] if ours else 6},
        "radial_chemical_embed_dim": width,
        "scalar_embed_mlp_hidden_layers_depth": ours["two_body_mlp_depth"] if ours else 1,
        "scalar_embed_mlp_hidden_layers_width": width, "scalar_embed_mlp_nonlinearity": "silu",
        "l_max": ours["lmax"] if ours else 1, "num_layers": ours["num_layers"] if ours else 2,
        "num_scalar_features": width,
        "num_tensor_features": ours["num_tensor_features"] if ours else 32,
        "allegro_mlp_hidden_layers_depth": ours["latent_mlp_depth"] if ours else 1,
        "allegro_mlp_hidden_layers_width": width, "allegro_mlp_nonlinearity": "silu",
        "parity": ours["parity"] if ours else True, "tp_path_channel_coupling": True,
        "readout_mlp_hidden_layers_depth": 1,
        "readout_mlp_hidden_layers_width": ours["edge_energy_width"] if ours else width,
        "readout_mlp_nonlinearity": "silu",
        "per_type_energy_scales": "${training_data_stats:forces_rms}",
    }  # fmt: skip
    if not ours:
        model["pair_potential"] = {"_target_": "nequip.nn.pair_potential.ZBL", "units": "metal",
                                   "chemical_species": symbols}  # fmt: skip
    return model


def nequip_config(work: Path, out: Path, minutes: float, symbols: list[str], allegro: bool,
                  ours: dict | None) -> dict:  # fmt: skip
    """The nequip or allegro tutorial config (configs/tutorial.yaml of each), adapted as
    train_accuracy's docstring lists."""
    model = allegro_model(symbols, ours) if allegro else nequip_model(symbols, ours)
    model.update({"avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
                  "per_type_energy_shifts": "${training_data_stats:per_atom_energy_mean}",
                  "per_type_energy_scales_trainable": False,
                  "per_type_energy_shifts_trainable": False})  # fmt: skip
    metric = "val0_epoch/weighted_sum"
    # nequip: batch 5 (validation 10); allegro: batch 1 (validation 5)
    batch, val_batch = (1, 5) if allegro else (5, 10)
    loader = {"_target_": "torch.utils.data.DataLoader", "num_workers": 0}
    metrics = {"_target_": "nequip.train.EnergyForceMetrics",
               "coeffs": {"per_atom_energy_mae" if allegro else "total_energy_mae": 1.0,
                          "forces_mae": 1.0}}  # fmt: skip
    callbacks = [
        {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "monitor": metric,
         "dirpath": str(out), "filename": "best", "save_last": True},
        {"_target_": "train_peers.wall_clock_callback", "path": str(out / "wall_clock.jsonl"),
         "package": "lightning"},
    ]  # fmt: skip
    module = {"_target_": "nequip.train.EMALightningModule",
              "loss": {"_target_": "nequip.train.EnergyForceLoss", "per_atom_energy": True,
                       "coeffs": {"total_energy": 1.0, "forces": 1.0}},
              "val_metrics": metrics, "test_metrics": metrics,
              "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.001 if allegro else 0.01},
              "model": model}  # fmt: skip
    if not allegro:  # only nequip's tutorial has a schedule, early stopping and an EMA decay
        callbacks[:0] = [
            {"_target_": "lightning.pytorch.callbacks.EarlyStopping", "monitor": metric,
             "min_delta": 1e-3, "patience": 20},
            {"_target_": "lightning.pytorch.callbacks.LearningRateMonitor",
             "logging_interval": "epoch"},
        ]  # fmt: skip
        module.update(ema_decay=0.999, train_metrics=metrics)
        module["lr_scheduler"] = {
            "scheduler": {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                          "factor": 0.6, "patience": 5, "threshold": 0.2, "min_lr": 1e-6},
            "monitor": metric, "interval": "epoch", "frequency": 1,
        }  # fmt: skip
    r_max = model["r_max"]
    return {
        "run": ["train"],
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule", "seed": 0,
            "train_file_path": str(work / "train.xyz"), "val_file_path": str(work / "valid.xyz"),
            "transforms": [
                {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                 "model_type_names": symbols,
                 "chemical_species_to_atom_type_map": {s: s for s in symbols}},
                {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": r_max},
            ],
            "train_dataloader": {**loader, "batch_size": batch, "shuffle": True},
            "val_dataloader": {**loader, "batch_size": val_batch},
            "stats_manager": {"_target_": "nequip.data.CommonDataStatisticsManager",
                              "dataloader_kwargs": {"batch_size": 10}, "type_names": symbols},
        },
        "trainer": {
            "_target_": "lightning.Trainer", "accelerator": "cpu", "enable_checkpointing": True,
            "max_epochs": 1000 if not allegro else 100000, "max_time": budget_string(minutes),
            "check_val_every_n_epoch": 1, "log_every_n_steps": 20 if not allegro else 5,
            "logger": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(out)},
            "callbacks": callbacks,
        },
        "training_module": module,
        "global_options": {"allow_tf32": False},
    }  # fmt: skip


def run_nequip(name: str, work: Path, data: dict, args, ours: dict | None = None) -> dict:
    """``nequip-train`` on the nequip (or, for ``allegro-*``, the allegro) tutorial recipe, or
    at our size with ``ours``; test predictions of ``NequIPCalculator`` from best.ckpt."""
    import yaml

    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    allegro = name.startswith("allegro")
    config = nequip_config(work, out, args.minutes, data["symbols"], allegro, ours)
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    train = [str(BIN / "nequip-train"), "-cp", str(out), "-cn", "config", f"hydra.run.dir={out}"]
    wall = run_logged(train, work / "logs" / f"{name}.log", args.threads, args.limit)
    from nequip.integrations.ase import NequIPCalculator

    # eager, from the checkpoint (its EMA weights), as nequip's own ASE tests build their
    # reference calculator: TorchScript compilation is refused on PyTorch >= 2.10, and
    # AOTInductor would need a C++ toolchain and minutes of compilation
    calculator = NequIPCalculator._from_saved_model(
        str(out / "best.ckpt"), device="cpu", chemical_species_to_atom_type_map=True
    )
    log = lightning_log(out / "wall_clock.jsonl", "val0_epoch/forces_mae", 1000.0)
    test = test_metrics(work / "test.xyz", *predictions(calculator, work / "test.xyz"))
    return {"test": test, **log, "wall_seconds": wall, "command": " ".join(train)}


# ---- schnetpack ---------------------------------------------------------------------------------


def run_schnetpack(work: Path, data: dict, args) -> dict:
    """``spktrain experiment=md17`` with SchNet on an ASE db of our frames and our split."""
    from ase.io import read
    from schnetpack.data import ASEAtomsData

    out, folder = work / "schnetpack", work / "schnetpack-data"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    frames = [a for part in ("train", "valid", "test") for a in read(work / f"{part}.xyz", ":")]
    db_path = folder / f"{data['name']}.db"
    db = ASEAtomsData.create(str(db_path), distance_unit="Ang",
                             property_unit_dict={"energy": "eV", "forces": "eV/Ang"})  # fmt: skip
    labels = [{"energy": np.array([a.get_potential_energy()]), "forces": a.get_forces()}
              for a in frames]  # fmt: skip
    db.add_systems(labels, frames)
    n_train, n_valid = data["n_train"], data["n_valid"]
    np.savez(folder / "split.npz", train_idx=np.arange(n_train),
             val_idx=np.arange(n_train, n_train + n_valid),
             test_idx=np.arange(n_train + n_valid, len(frames)))  # fmt: skip
    clock = out / "wall_clock.jsonl"
    train = [
        str(BIN / "spktrain"), "experiment=md17", "model/representation=schnet", "data=custom",
        f"data.datapath={db_path}", f"+data.split_file={folder / 'split.npz'}",
        f"data.num_train={n_train}", f"data.num_val={n_valid}",
        f"data.num_test={len(frames) - n_train - n_valid}", "data.num_workers=0",
        "data.property_units.energy=eV", "data.property_units.forces=eV/Ang",
        f"run.data_dir={folder}", f"run.path={work}", "run.id=schnetpack",
        f"run.experiment=md17_{data['name']}", "+seed=0",
        "logger=csv", "trainer.accelerator=cpu", f"+trainer.max_time={budget_string(args.minutes)}",
        "+callbacks.wall_clock._target_=train_peers.wall_clock_callback",
        f"+callbacks.wall_clock.path={clock}", "+callbacks.wall_clock.package=pytorch_lightning",
    ]  # fmt: skip
    # spktrain's test stage (after the budget) reloads a Lightning checkpoint, which PyTorch
    # >= 2.6 refuses by default (weights_only); schnetpack 2.2.0 does not pass weights_only=False
    wall = run_logged(train, work / "logs" / "schnetpack.log", args.threads, args.limit,
                      cwd=work, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")  # fmt: skip
    import schnetpack

    calculator = schnetpack.interfaces.SpkCalculator(
        model=str(out / "best_model"),
        neighbor_list=schnetpack.transform.ASENeighborList(cutoff=5.0),
        energy_unit="eV",
        position_unit="Ang",
    )
    log = lightning_log(clock, "val_forces_mae", 1000.0)
    test = test_metrics(work / "test.xyz", *predictions(calculator, work / "test.xyz"))
    return {"test": test, **log, "wall_seconds": wall, "command": " ".join(train)}


# ---- MACE ---------------------------------------------------------------------------------------

MACE_START = "Started training"  # mace/tools/train.py logs it when the first epoch begins
MACE_END_OF_EPOCH = "INFO: Epoch "  # its validation line after each epoch
MACE_EPOCH = re.compile(r"^(\S+ \S+) INFO: Epoch (\d+):.*MAE_F=\s*([\d.]+) meV")


def mace_inputs(work: Path) -> None:
    """train/valid/test.xyz with the labels under REF_energy/REF_forces, the keys MACE's README
    asks for since ASE 3.23 (an ``energy`` key is renamed with a warning)."""
    from ase.io import read, write

    for part in ("train", "valid"):
        frames = read(work / f"{part}.xyz", ":")
        for atoms in frames:
            atoms.info["REF_energy"] = atoms.get_potential_energy()
            atoms.arrays["REF_forces"] = atoms.get_forces()
            atoms.calc = None
        write(work / f"mace-{part}.xyz", frames, format="extxyz")


def mace_log(path: Path) -> dict:
    """Curve (minutes since training started, validation force MAE in meV/Å), epochs and
    seconds from the timestamps of MACE's log."""
    stamp = lambda text: datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()  # noqa: E731
    start, rows = None, []
    for line in path.read_text(errors="replace").splitlines() if path.is_file() else []:
        if start is None and MACE_START in line:
            start = stamp(" ".join(line.split()[:2]))
        elif start is not None and (match := MACE_EPOCH.match(line)):
            rows.append((stamp(match[1]) - start, int(match[2]), float(match[3])))
    curve = [(seconds / 60, mae) for seconds, _, mae in rows]
    # "Initial:" is the validation before training, "Epoch k:" the one after epoch k + 1
    epochs, seconds = (rows[-1][1] + 1, rows[-1][0]) if rows else (0, float("nan"))
    return {"curve": curve, "epochs": float(epochs), "train_seconds": seconds}


def run_mace(name: str, work: Path, data: dict, args, matched: dict | None = None) -> dict:
    """``mace_run_train`` on MACE's README recipe (or at ``matched`` size) for the budget, then
    again on the best checkpoint with no epochs left, which writes the model file; test
    predictions of ``MACECalculator`` from this file run in ``.venv-mace``."""
    python = Path(args.mace_python)
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    mace_inputs(work)
    size = matched or {"hidden_irreps": "128x0e + 128x1o", "r_max": 5.0}
    train = [
        str(python.parent / "mace_run_train"), f"--name={name}", "--seed=0",
        f"--train_file={work / 'mace-train.xyz'}", f"--valid_file={work / 'mace-valid.xyz'}",
        "--energy_key=REF_energy", "--forces_key=REF_forces",
        "--config_type_weights={\"Default\":1.0}", "--E0s=average", "--model=MACE",
        *[f"--{key}={value}" for key, value in size.items()],
        "--batch_size=10", "--max_num_epochs=1500", "--stage_two", "--start_stage_two=1200",
        "--ema", "--ema_decay=0.99", "--amsgrad", "--restart_latest", "--device=cpu",
        "--num_workers=0", "--error_table=PerAtomMAE",
    ]  # fmt: skip
    log = work / "logs" / f"{name}.log"
    budget = Budget(MACE_START, MACE_END_OF_EPOCH, 60 * args.minutes)
    wall = run_logged(train, log, args.threads, args.limit, cwd=out, budget=budget)
    curve = mace_log(log)
    # the stopped run left its best checkpoint (EMA weights); with no epochs left a restart
    # only loads it, evaluates and saves {name}.model
    finish = [arg for arg in train if not arg.startswith("--max_num_epochs")]
    run_logged(finish + ["--max_num_epochs=0"], work / "logs" / f"{name}-save.log",
               args.threads, 1800, cwd=out)  # fmt: skip
    npz = out / "test-predictions.npz"
    predict = [str(python), str(HERE / "train_peers.py"), str(out / f"{name}.model"),
               str(work / "test.xyz"), str(npz)]  # fmt: skip
    run_logged(predict, work / "logs" / f"{name}-evaluate.log", args.threads, 1800)
    saved = np.load(npz)
    forces = np.split(saved["forces"], np.cumsum(saved["num_atoms"])[:-1])
    test = test_metrics(work / "test.xyz", saved["energy"], forces)
    return {"test": test, **curve, "wall_seconds": wall, "command": " ".join(train)}


def mace_predict(model: str, test_file: str, out: str) -> None:
    """(In .venv-mace.) Energies and forces of ``MACECalculator`` on ``test_file`` to ``out``."""
    from mace.calculators import MACECalculator

    calculator = MACECalculator(model_paths=model, device="cpu", default_dtype="float64")
    energy, forces = predictions(calculator, Path(test_file))
    np.savez(out, energy=np.array(energy), forces=np.concatenate(forces),
             num_atoms=np.array([len(f) for f in forces]))  # fmt: skip


if __name__ == "__main__":
    mace_predict(*sys.argv[1:4])
