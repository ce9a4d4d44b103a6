"""Accuracy at equal budget, side by side: our NequIP and SchNet against the ``nequip`` and
``schnetpack`` packages trained with their documented default recipes on the same data, the
same split and the same wall-clock budget, one training at a time, CPU only.

    .venv-bench/bin/python bench/train_accuracy.py --minutes 30 --threads 2 --work runs/train-accuracy
    .venv-bench/bin/python bench/train_accuracy.py --quick --minutes 0.5   # a smoke test of every path

Data: the shipped GFN2-xTB ethanol set (eV, Å). Frames 0–1249 split by
``split_indices(1250, 1000, 250, 0, seed=0)`` into 1000 training and 250 validation frames
(exactly what ``euclidnn train ethanol --index :1250 --n-valid 250 --seed 0`` does; the script
checks our run's split.json against it); test = frames 1500–1999. ``--quick``: 150 frames
split 100/50, test = frames 1500–1549. train/valid/test.xyz (extxyz, ``energy``, ``forces``)
are written to the work folder; the peers read them. Every training gets OMP_NUM_THREADS=T.

Recipes followed:
  ours: ``euclidnn train`` defaults (``--model nequip`` / ``--model schnet``).
  nequip 0.19.1: the tutorial config, ``configs/tutorial.yaml`` of
    https://github.com/mir-group/nequip (read at commit 01f5ac1790e1; the wheel ships no
    configs; linked from the User Guide, https://nequip.readthedocs.io/en/latest/guide/guide.html):
    NequIPGNNModel with 4 layers, l_max 1, 32 features, 8 Bessels, p=6, radial MLP 2×64,
    parity, ZBL pair potential, r_max 5 Å; EnergyForceLoss (per-atom energy, coefficients
    1:1); Adam lr 0.01; ReduceLROnPlateau (factor 0.6, patience 5, threshold 0.2, min_lr 1e-6)
    on the validation weighted sum; EMALightningModule (decay 0.999); batch 5 (validation 10);
    EarlyStopping (patience 20); best.ckpt on the validation weighted sum. Evaluated with
    ``nequip.integrations.ase.NequIPCalculator`` built eagerly from best.ckpt (EMA weights).
  schnetpack 2.2.0: ``spktrain experiment=md17`` (configs shipped in the package,
    ``schnetpack/configs/experiment/md17.yaml`` over ``train.yaml``): cutoff 5 Å, AdamW
    lr 1e-3, loss 0.01·MSE(E) + 0.99·MSE(F), batch 10, ReduceLROnPlateau (factor 0.5,
    patience 75), EMA 0.995, early stopping 200, best_model on val_loss; with the SchNet
    representation of ``configs/model/representation/schnet.yaml`` (128 features,
    6 interactions, 20 Gaussians, cosine cutoff). Evaluated with
    ``schnetpack.interfaces.SpkCalculator`` on best_model (EMA weights, postprocessing on).

Deviations from those defaults (all runs): CPU, no data-loader worker processes (the
defaults are 5 and 8 on a 2-core machine), a wall-clock budget (Lightning ``max_time``; ours
``--minutes``), a CSV logger instead of wandb/TensorBoard and a small callback that logs the
wall-clock time of each validation. nequip: species [C, H, O] (0.19.1's
ChemicalSpeciesToAtomTypeMapper takes ``model_type_names`` and a species map, not the
tutorial's ``chemical_symbols``), the data module reads our train/valid files instead of
``split_dataset``, ``run: [train]`` (we test ourselves), no ``compile_mode: compile`` (the
tutorial's GPU speed-up), seeds 0; evaluated eagerly from the checkpoint, not through
``nequip-compile`` (TorchScript is refused on PyTorch >= 2.10, AOTInductor needs a C++
toolchain). schnetpack: ``model/representation=schnet`` (md17 uses the nnp default, PaiNN),
``data=custom`` on an ASE db of our frames with our split file, property units eV and eV/Ang
(md17's are kcal/mol), ``seed=0``; its own test stage runs after the budget.

Throughput = epochs × training frames / seconds of the fit (validation included), read from
our log.csv and from the callback's log of the peers (epochs = optimizer steps / batches per
epoch, so a partial last epoch counts in part). Results: DIR/results.json, DIR/curves.png,
one log per training in DIR/logs/.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import header

BIN = Path(sys.executable).parent  # the bench venv's scripts: euclidnn, nequip-*, spktrain
MODELS = ("ours-nequip", "ours-schnet", "nequip-pkg", "schnetpack")
SYMBOLS = ["C", "H", "O"]


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


def write_data(work: Path, quick: bool) -> dict:
    """train/valid/test.xyz in ``work``; the sizes and the frame indices of each part."""
    from ase.io import write

    from euclidnn.data import load_dataset, split_indices

    n_train, n_valid, n_test = (100, 50, 50) if quick else (1000, 250, 500)
    frames = load_dataset("ethanol")
    parts = split_indices(n_train + n_valid, n_train, n_valid, 0, seed=0)
    index = {"train": parts.train, "valid": parts.valid, "test": list(range(1500, 1500 + n_test))}
    work.mkdir(parents=True, exist_ok=True)
    for name, chosen in index.items():
        write(work / f"{name}.xyz", [frames[i].to_ase() for i in chosen], format="extxyz")
    return {"n_train": n_train, "n_valid": n_valid, "n_test": n_test, "index": index}


def run_logged(command: list[str], log: Path, threads: int, limit: float, cwd=None, **env) -> float:
    """Run ``command`` with its output in ``log`` and ``env`` added to the environment; its
    wall-clock seconds. Killed after ``limit`` seconds (the budget plus a margin for setup)."""
    env = dict(os.environ, **env, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    env["CUDA_VISIBLE_DEVICES"] = ""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ {' '.join(command)}  > {log}", flush=True)
    started = time.perf_counter()
    with open(log, "w") as out:
        try:
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                  timeout=limit).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = f"killed after {limit:.0f} s"
    if code != 0:
        print(f"  exit {code}; the last lines of {log}:\n" + "".join(open(log).readlines()[-15:]))
    return time.perf_counter() - started


def peer_metrics(calculator, test_file: Path) -> dict:
    """``euclidnn evaluate``'s metrics of an ASE calculator on the labelled test frames."""
    from ase.io import read

    from euclidnn.train.metrics import Comparison, metrics

    frames = read(test_file, ":")
    energy, forces = [], []
    for atoms in frames:
        predicted = atoms.copy()
        predicted.calc = calculator
        energy.append(predicted.get_potential_energy())
        forces.append(predicted.get_forces())
    comparison = Comparison(
        num_atoms=np.array([len(a) for a in frames]),
        numbers=np.concatenate([a.numbers for a in frames]),
        energy=np.array(energy),
        energy_ref=np.array([a.get_potential_energy() for a in frames]),
        forces=np.concatenate(forces),
        forces_ref=np.concatenate([a.get_forces() for a in frames]),
    )
    return metrics(comparison)


def lightning_log(path: Path, key: str, scale: float) -> dict:
    """Curve (minutes, validation force MAE in meV/Å), epochs and seconds from the callback's
    rows."""
    rows = [json.loads(line) for line in open(path)] if path.is_file() else []
    curve = [(r["seconds"] / 60, scale * r[key]) for r in rows if not r["end"] and key in r]
    last = rows[-1] if rows else {"epochs": 0.0, "seconds": float("nan")}
    return {"curve": curve, "epochs": last["epochs"], "train_seconds": last["seconds"]}


def run_ours(model: str, work: Path, data: dict, args) -> dict:
    """``euclidnn train`` then ``euclidnn evaluate --json`` on test.xyz."""
    out = work / f"ours-{model}"
    n_pool = data["n_train"] + data["n_valid"]
    train = [str(BIN / "euclidnn"), "train", "ethanol", "--index", f":{n_pool}", "--n-valid",
             str(data["n_valid"]), "--seed", "0", "--model", model, "--minutes", str(args.minutes),
             "--threads", str(args.threads), "--out", str(out), "--overwrite", "--quiet"]  # fmt: skip
    wall = run_logged(train, work / "logs" / f"ours-{model}.log", args.threads, args.limit)
    split = json.loads((out / "split.json").read_text())
    for part in ("train", "valid"):
        used = [int(name.rsplit(" ", 1)[1]) for name in split[part]]
        if used != data["index"][part]:
            raise RuntimeError(f"{out}/split.json: {part} frames differ from the written split")
    result = work / f"ours-{model}" / "test.json"
    evaluate = [str(BIN / "euclidnn"), "evaluate", str(out / "model.safetensors"),
                str(work / "test.xyz"), "--json", str(result)]  # fmt: skip
    run_logged(evaluate, work / "logs" / f"ours-{model}-evaluate.log", args.threads, 1800)
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    curve = [(float(r["seconds"]) / 60, float(r["forces_mae_meV_per_A"])) for r in rows]
    epochs, seconds = float(rows[-1]["epoch"]), float(rows[-1]["seconds"])
    return {"test": json.loads(result.read_text()), "curve": curve, "epochs": epochs,
            "train_seconds": seconds, "wall_seconds": wall, "command": " ".join(train)}  # fmt: skip


def budget_string(minutes: float) -> str:
    """Lightning's ``max_time`` as DD:HH:MM:SS."""
    seconds = max(round(60 * minutes), 1)
    return f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def nequip_config(work: Path, out: Path, minutes: float) -> dict:
    """The nequip tutorial config (configs/tutorial.yaml), adapted as the docstring lists."""
    metric = "val0_epoch/weighted_sum"
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": 5, "num_workers": 0}
    metrics = {"_target_": "nequip.train.EnergyForceMetrics",
               "coeffs": {"total_energy_mae": 1.0, "forces_mae": 1.0}}  # fmt: skip
    model = {
        "_target_": "nequip.model.NequIPGNNModel", "seed": 0, "model_dtype": "float32",
        "type_names": SYMBOLS, "r_max": 5.0, "num_bessels": 8, "bessel_trainable": False,
        "polynomial_cutoff_p": 6, "num_layers": 4, "l_max": 1, "parity": True,
        "num_features": 32, "radial_mlp_depth": 2, "radial_mlp_width": 64,
        "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
        "per_type_energy_scales": "${training_data_stats:per_type_forces_rms}",
        "per_type_energy_shifts": "${training_data_stats:per_atom_energy_mean}",
        "per_type_energy_scales_trainable": False, "per_type_energy_shifts_trainable": False,
        "pair_potential": {"_target_": "nequip.nn.pair_potential.ZBL", "units": "metal",
                           "chemical_species": SYMBOLS},
    }  # fmt: skip
    callbacks = [
        {"_target_": "lightning.pytorch.callbacks.EarlyStopping", "monitor": metric,
         "min_delta": 1e-3, "patience": 20},
        {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "monitor": metric,
         "dirpath": str(out), "filename": "best", "save_last": True},
        {"_target_": "lightning.pytorch.callbacks.LearningRateMonitor", "logging_interval": "epoch"},
        {"_target_": "train_accuracy.wall_clock_callback", "path": str(out / "wall_clock.jsonl"),
         "package": "lightning"},
    ]  # fmt: skip
    return {
        "run": ["train"],
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule", "seed": 0,
            "train_file_path": str(work / "train.xyz"), "val_file_path": str(work / "valid.xyz"),
            "transforms": [
                {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                 "model_type_names": SYMBOLS,
                 "chemical_species_to_atom_type_map": {s: s for s in SYMBOLS}},
                {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": 5.0},
            ],
            "train_dataloader": {**loader, "shuffle": True},
            "val_dataloader": {**loader, "batch_size": 10},
            "stats_manager": {"_target_": "nequip.data.CommonDataStatisticsManager",
                              "dataloader_kwargs": {"batch_size": 10}, "type_names": SYMBOLS},
        },
        "trainer": {
            "_target_": "lightning.Trainer", "accelerator": "cpu", "enable_checkpointing": True,
            "max_epochs": 1000, "max_time": budget_string(minutes),
            "check_val_every_n_epoch": 1, "log_every_n_steps": 20,
            "logger": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(out)},
            "callbacks": callbacks,
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule", "ema_decay": 0.999,
            "loss": {"_target_": "nequip.train.EnergyForceLoss", "per_atom_energy": True,
                     "coeffs": {"total_energy": 1.0, "forces": 1.0}},
            "val_metrics": metrics, "train_metrics": metrics, "test_metrics": metrics,
            "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.01},
            "lr_scheduler": {
                "scheduler": {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                              "factor": 0.6, "patience": 5, "threshold": 0.2, "min_lr": 1e-6},
                "monitor": metric, "interval": "epoch", "frequency": 1,
            },
            "model": model,
        },
        "global_options": {"allow_tf32": False},
    }  # fmt: skip


def run_nequip(work: Path, data: dict, args) -> dict:
    """``nequip-train`` on the tutorial recipe, ``nequip-compile`` of best.ckpt, ASE predictions."""
    import yaml

    out = work / "nequip-pkg"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(nequip_config(work, out, args.minutes)))
    train = [str(BIN / "nequip-train"), "-cp", str(out), "-cn", "config", f"hydra.run.dir={out}"]
    wall = run_logged(train, work / "logs" / "nequip-pkg.log", args.threads, args.limit)
    from nequip.integrations.ase import NequIPCalculator

    # eager, from the checkpoint (its EMA weights), as nequip's own ASE tests build their
    # reference calculator: TorchScript compilation is refused on PyTorch >= 2.10, and
    # AOTInductor would need a C++ toolchain and minutes of compilation
    calculator = NequIPCalculator._from_saved_model(
        str(out / "best.ckpt"), device="cpu", chemical_species_to_atom_type_map=True
    )
    log = lightning_log(out / "wall_clock.jsonl", "val0_epoch/forces_mae", 1000.0)
    return {"test": peer_metrics(calculator, work / "test.xyz"), **log, "wall_seconds": wall,
            "command": " ".join(train)}  # fmt: skip


def run_schnetpack(work: Path, data: dict, args) -> dict:
    """``spktrain experiment=md17`` with SchNet on an ASE db of our frames and our split."""
    from ase.io import read
    from schnetpack.data import ASEAtomsData

    out, folder = work / "schnetpack", work / "schnetpack-data"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    frames = [a for part in ("train", "valid", "test") for a in read(work / f"{part}.xyz", ":")]
    db = ASEAtomsData.create(str(folder / "ethanol.db"), distance_unit="Ang",
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
        f"data.datapath={folder / 'ethanol.db'}", f"+data.split_file={folder / 'split.npz'}",
        f"data.num_train={n_train}", f"data.num_val={n_valid}",
        f"data.num_test={len(frames) - n_train - n_valid}", "data.num_workers=0",
        "data.property_units.energy=eV", "data.property_units.forces=eV/Ang",
        f"run.data_dir={folder}", f"run.path={work}", "run.id=schnetpack",
        "run.experiment=md17_ethanol", "+seed=0",
        "logger=csv", "trainer.accelerator=cpu", f"+trainer.max_time={budget_string(args.minutes)}",
        "+callbacks.wall_clock._target_=train_accuracy.wall_clock_callback",
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
    return {"test": peer_metrics(calculator, work / "test.xyz"), **log, "wall_seconds": wall,
            "command": " ".join(train)}  # fmt: skip


def report(results: dict, work: Path, data: dict) -> None:
    """Print the table, write results.json and curves.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for r in results.values():
        r["frames_per_s"] = r["epochs"] * data["n_train"] / r["train_seconds"]
    force = {name: r["test"]["forces_mae_meV_per_A"] for name, r in results.items()}
    ours = [force[m] for m in ("ours-nequip", "ours-schnet") if m in force]
    peers = [force[m] for m in ("nequip-pkg", "schnetpack") if m in force]
    ratio = min(ours) / min(peers) if ours and peers else None
    head = f"{'model':<12} {'F MAE meV/Å':>12} {'F RMSE':>8} {'E MAE meV/at':>13} {'E MAE meV':>10} {'epochs':>7} {'frames/s':>9}"
    print(head)
    for name, r in results.items():
        t = r["test"]
        print(f"{name:<12} {t['forces_mae_meV_per_A']:12.2f} {t['forces_rmse_meV_per_A']:8.2f} "
              f"{t['energy_per_atom_mae_meV']:13.3f} {t['energy_mae_meV']:10.2f} "
              f"{r['epochs']:7.2f} {r['frames_per_s']:9.1f}")  # fmt: skip
    if ratio is not None:
        print(f"our best force MAE / the better peer's: {ratio:.3f} (goal ≤ 0.5)")
    sizes = {k: data[k] for k in ("n_train", "n_valid", "n_test")}
    summary = {"data": sizes, "results": results, "force_mae_ratio_ours_to_better_peer": ratio}
    (work / "results.json").write_text(json.dumps(summary, indent=2))
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        if r["curve"]:
            ax.plot(*zip(*r["curve"]), marker=".", label=name)
    ax.set(xlabel="wall-clock minutes", ylabel="validation force MAE (meV/Å)", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(work / "curves.png", dpi=120)
    print(f"wrote {work / 'results.json'} and {work / 'curves.png'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget of each")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each training")
    parser.add_argument("--work", default="runs/train-accuracy", help="work and result folder")
    parser.add_argument("--quick", action="store_true", help="100/50/50 frames (smoke test)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="run only these (earlier results in results.json are kept)")  # fmt: skip
    args = parser.parse_args()
    print(header(), flush=True)
    args.limit = 60 * args.minutes + 1200  # setup (statistics, data) + a stop at an epoch's end
    work = Path(args.work).resolve()
    data = write_data(work, args.quick)
    print(
        f"data: {data['n_train']} train, {data['n_valid']} valid, {data['n_test']} test in {work}"
    )
    previous = work / "results.json"
    kept = json.loads(previous.read_text()) if previous.is_file() else {}
    same = kept.get("data") == {k: data[k] for k in ("n_train", "n_valid", "n_test")}
    results = kept["results"] if same else {}  # earlier runs on the same data
    runners = {
        "ours-nequip": lambda: run_ours("nequip", work, data, args),
        "ours-schnet": lambda: run_ours("schnet", work, data, args),
        "nequip-pkg": lambda: run_nequip(work, data, args),
        "schnetpack": lambda: run_schnetpack(work, data, args),
    }
    for name in args.models:
        print(f"== {name}: {args.minutes:g} min, {args.threads} threads", flush=True)
        results[name] = runners[name]()
        results[name]["minutes"] = args.minutes
    report({m: results[m] for m in MODELS if m in results}, work, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
