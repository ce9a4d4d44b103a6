"""Accuracy at equal budget, side by side: our NequIP, Allegro and SchNet against the
``nequip``, ``nequip-allegro``, ``schnetpack`` and ``mace-torch`` packages trained with their
documented recipes on the same data, the same split and the same wall-clock budget, one training
at a time, CPU only. The peers' runners are in ``bench/train_peers.py``.

    .venv-bench/bin/python bench/train_accuracy.py --minutes 30 --threads 2 --work runs/train-accuracy
    .venv-bench/bin/python bench/train_accuracy.py --minutes 30 --matched   # + the peers at our size
    .venv-bench/bin/python bench/train_accuracy.py --data lithium-phosphate --minutes 30 --matched
    .venv-bench/bin/python bench/train_accuracy.py --quick --minutes 0.5 --matched  # smoke test

MACE trains in its own venv (``make .venv-mace/bin/.installed``: mace-torch 0.3.14 pins e3nn
0.4.4; ``--mace-python``, default ``.venv-mace/bin/python`` of this checkout).

Data (``--data``):
  ethanol (default): the shipped GFN2-xTB ethanol set (eV, Å). Frames 0–1249 split by
    ``split_indices(1250, 1000, 250, 0, seed=0)`` into 1000 training and 250 validation frames
    (exactly what ``euclidnn train ethanol --index :1250 --n-valid 250 --seed 0`` does; the
    script checks our run's split.json against it); test = frames 1500–1999. ``--quick``: 150
    frames split 100/50, test = frames 1500–1549.
  lithium-phosphate: ``examples/lithium_phosphate/li4p2o7-gfn1xtb.xyz.gz``, 85 frames of a
    periodic 52-atom Li4P2O7 cell (GFN1-xTB: energy, forces, stress). Train and validate on the
    2000 K melt (frames 0–39, ``split_indices(40, 32, 8, 0, seed=0)``: 32/8), test on the quench
    (frames 40–84, 1000/600/300 K): an extrapolation in temperature. Small (issue 20 may extend
    it); ``--quick`` changes nothing. Every package handles the periodic cell (cell and pbc read
    from the extxyz files); only ours trains on the stress as well (its default loss uses every
    label present); the peers' recipes fit energy and forces. Test metrics are energy and forces.
train/valid/test.xyz (extxyz, ``energy``, ``forces``) are written to the work folder; every run
reads them (ours on ethanol reads the shipped set by name with the same split). Every training
gets OMP_NUM_THREADS=T.

Rows: ours-nequip, ours-allegro, ours-schnet (``euclidnn train`` defaults, ``--model``), the
deadline schedule for each of ours (``ours-nequip-cosine`` etc.: ``--schedule cosine``, run only
when named in ``--models``: the default schedule is plateau), the
peers on their recipes (nequip-pkg, allegro-pkg, schnetpack, mace), and with ``--matched`` the
peers at our model size (nequip-pkg-matched, allegro-pkg-matched, mace-matched), so that the
model and the implementation can be told apart.

Recipes followed:
  ours: ``euclidnn train`` defaults (``--model nequip`` / ``allegro`` / ``schnet``).
  nequip 0.19.1: the tutorial config, ``configs/tutorial.yaml`` of
    https://github.com/mir-group/nequip (read at commit 01f5ac1790e1; the wheel ships no
    configs; linked from the User Guide, https://nequip.readthedocs.io/en/latest/guide/guide.html):
    NequIPGNNModel with 4 layers, l_max 1, 32 features, 8 Bessels, p=6, radial MLP 2×64,
    parity, ZBL pair potential, r_max 5 Å; EnergyForceLoss (per-atom energy, coefficients
    1:1); Adam lr 0.01; ReduceLROnPlateau (factor 0.6, patience 5, threshold 0.2, min_lr 1e-6)
    on the validation weighted sum; EMALightningModule (decay 0.999); batch 5 (validation 10);
    EarlyStopping (patience 20); best.ckpt on the validation weighted sum. Evaluated with
    ``nequip.integrations.ase.NequIPCalculator`` built eagerly from best.ckpt (EMA weights).
  nequip-allegro 0.8.3: its minimal example, ``configs/tutorial.yaml`` of
    https://github.com/mir-group/allegro (read at commit d97ddb233ee4, the version whose keys
    0.8.3 takes; the wheel ships no configs; linked from its README): AllegroModel with
    TwoBodyBesselScalarEmbed (8 Bessels, p=6), 64 scalar features (embedding, scalar-embed MLP
    1×64, Allegro MLP 1×64, readout MLP 1×64), 32 tensor features, 2 layers, l_max 1, parity,
    path-channel coupling, ZBL, r_max 5 Å, per-type energy scales = the force RMS;
    EMALightningModule (its default decay), EnergyForceLoss (per-atom energy, 1:1); Adam lr
    1e-3 (no schedule, no early stopping); batch 1 (validation 5). Evaluated as nequip.
  schnetpack 2.2.0: ``spktrain experiment=md17`` (configs shipped in the package,
    ``schnetpack/configs/experiment/md17.yaml`` over ``train.yaml``): cutoff 5 Å, AdamW
    lr 1e-3, loss 0.01·MSE(E) + 0.99·MSE(F), batch 10, ReduceLROnPlateau (factor 0.5,
    patience 75), EMA 0.995, early stopping 200, best_model on val_loss; with the SchNet
    representation of ``configs/model/representation/schnet.yaml`` (128 features,
    6 interactions, 20 Gaussians, cosine cutoff). Evaluated with
    ``schnetpack.interfaces.SpkCalculator`` on best_model (EMA weights, postprocessing on).
  mace-torch 0.3.14: the training example of its README ("Training", the ``mace_run_train``
    command; the package's METADATA carries it): ``--model=MACE --hidden_irreps='128x0e +
    128x1o' --r_max=5.0 --batch_size=10 --max_num_epochs=1500 --stage_two
    --start_stage_two=1200 --ema --ema_decay=0.99 --amsgrad --restart_latest``, with the
    package's defaults for the rest (2 interactions, correlation 3, max_ell 3, 8 Bessels,
    Adam lr 0.01 with ReduceLROnPlateau, energy weight 1, forces 100, float64). Evaluated with
    ``mace.calculators.MACECalculator`` on the saved model (the best validation checkpoint,
    EMA weights), in float64.

Deviations from those recipes (all runs): CPU, no data-loader worker processes (the
defaults are 5 and 8 on a 2-core machine), a wall-clock budget (Lightning ``max_time``; ours
``--minutes``; MACE has no such option: stopped ``--minutes`` after it logs "Started
training", or at the end of its first epoch if that comes later, then restarted with
``--max_num_epochs=0``, which loads the best checkpoint and writes the model file), a CSV logger instead of wandb/TensorBoard and a small callback that
logs the wall-clock time of each validation (MACE: the timestamps of its log). nequip and
allegro: species as the data set's symbols (0.19.1's ChemicalSpeciesToAtomTypeMapper takes
``model_type_names`` and a species map, not the tutorials' ``chemical_symbols``), ZBL in
``metal`` units (eV, Å; the allegro tutorial's aspirin data are in ``real``), the data module
reads our train/valid files instead of ``split_dataset`` / the sGDML download, ``run: [train]``
(we test ourselves), no ``compile_mode: compile`` (a GPU speed-up), seeds 0; evaluated eagerly
from the checkpoint, not through ``nequip-compile`` (TorchScript is refused on PyTorch >= 2.10,
AOTInductor needs a C++ toolchain). allegro only: checkpoint chosen on the validation weighted
sum as for nequip (the tutorial keeps only the last epoch), its budget instead of
``max_epochs: 5``. schnetpack: ``model/representation=schnet`` (md17 uses the nnp default,
PaiNN), ``data=custom`` on an ASE db of our frames with our split file, property units eV and
eV/Ang (md17's are kcal/mol), ``seed=0``; its own test stage runs after the budget. MACE:
``--valid_file`` instead of ``--valid_fraction=0.05``, no ``--test_file`` (we test ourselves),
``--E0s=average`` (least-squares E0s, the README's option when isolated-atom energies are
unknown: we have none at the xTB level), labels as REF_energy/REF_forces (the README's keys
since ASE 3.23), ``--error_table=PerAtomMAE`` (what the log prints: the curve's force MAE),
``--device=cpu``, ``--seed=0``; its stage two (epoch 1200) is not reached in 30 minutes.

At our size (``--matched``; our sizes read from ``euclidnn train ... --print-config``):
  nequip-pkg-matched: the nequip recipe with our NequIP's r_max, layers, l_max, features,
    Bessels, p, parity and radial MLP, and no ZBL (ours has none).
  allegro-pkg-matched: the allegro recipe with our Allegro's r_max, l_max, layers, tensor
    features, latent width (scalar features and every MLP width), two-body MLP depth, latent
    MLP depth, edge-energy (readout) width, Bessels, p and parity, and no ZBL.
  mace-matched: the MACE recipe with 32x0e+32x1o hidden features and our NequIP's r_max (2
    interactions, correlation 3 and max_ell 3 as in the recipe), the size of ``bench/md.py``'s
    MACE row.

Throughput = epochs × training frames / seconds of the fit (validation included), read from
our log.csv and from the callback's log of the peers (epochs = optimizer steps / batches per
epoch, so a partial last epoch counts in part; MACE: whole epochs from its log). Results:
DIR/results.json, DIR/curves.png, one log per training in DIR/logs/.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import yaml
from machine import header
from train_peers import BIN, run_logged, run_mace, run_nequip, run_schnetpack

ROOT = Path(__file__).resolve().parent.parent
OURS = ("ours-nequip", "ours-allegro", "ours-schnet")
PEERS = ("nequip-pkg", "allegro-pkg", "schnetpack", "mace")
MATCHED = ("nequip-pkg-matched", "allegro-pkg-matched", "mace-matched")
COSINE = tuple(f"{name}-cosine" for name in OURS)
MODELS = OURS + PEERS + MATCHED + COSINE
LITHIUM_PHOSPHATE = ROOT / "examples" / "lithium_phosphate" / "li4p2o7-gfn1xtb.xyz.gz"


def write_data(work: Path, name: str, quick: bool) -> dict:
    """train/valid/test.xyz in ``work``; the sizes, the symbols and the frame indices of each
    part."""
    from ase.io import read, write

    from euclidnn.data import load_dataset, split_indices

    if name == "ethanol":
        n_train, n_valid, n_test = (100, 50, 50) if quick else (1000, 250, 500)
        frames = [f.to_ase() for f in load_dataset("ethanol")]
        test = list(range(1500, 1500 + n_test))
    else:  # lithium-phosphate: melt (0–39) for training and validation, quench (40–84) for test
        n_train, n_valid = 32, 8
        frames = read(LITHIUM_PHOSPHATE, ":")
        test = list(range(40, len(frames)))
    parts = split_indices(n_train + n_valid, n_train, n_valid, 0, seed=0)
    index = {"train": parts.train, "valid": parts.valid, "test": test}
    work.mkdir(parents=True, exist_ok=True)
    for part, chosen in index.items():
        write(work / f"{part}.xyz", [frames[i] for i in chosen], format="extxyz")
    symbols = sorted({s for atoms in frames for s in atoms.get_chemical_symbols()})
    return {"name": name.replace("-", "_"), "n_train": n_train, "n_valid": n_valid,
            "n_test": len(test), "symbols": symbols, "index": index}  # fmt: skip


def train_source(work: Path, data: dict) -> list[str]:
    """The data arguments of ``euclidnn train``: the shipped set by name (ethanol) or the files."""
    if data["name"] == "ethanol":
        n_pool = data["n_train"] + data["n_valid"]
        return ["ethanol", "--index", f":{n_pool}", "--n-valid", str(data["n_valid"])]
    return [str(work / "train.xyz"), "--valid", str(work / "valid.xyz")]


def our_settings(model: str, work: Path, data: dict) -> dict:
    """Our resolved model settings for ``model`` (``euclidnn train ... --print-config``)."""
    import subprocess

    command = [str(BIN / "euclidnn"), "train", *train_source(work, data), "--model", model,
               "--print-config"]  # fmt: skip
    printed = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return yaml.safe_load(printed)["model"]["settings"]


def run_ours(model: str, work: Path, data: dict, args, schedule: str | None = None) -> dict:
    """``euclidnn train`` (``--schedule`` when given) then ``euclidnn evaluate --json`` on test.xyz."""
    name = f"ours-{model}" + (f"-{schedule}" if schedule else "")
    out = work / name
    train = [str(BIN / "euclidnn"), "train", *train_source(work, data), "--seed", "0",
             "--model", model, "--minutes", str(args.minutes), "--threads", str(args.threads),
             "--out", str(out), "--overwrite", "--quiet"]  # fmt: skip
    if schedule:
        train += ["--schedule", schedule]
    wall = run_logged(train, work / "logs" / f"{name}.log", args.threads, args.limit)
    if data["name"] == "ethanol":
        split = json.loads((out / "split.json").read_text())
        for part in ("train", "valid"):
            used = [int(name.rsplit(" ", 1)[1]) for name in split[part]]
            if used != data["index"][part]:
                raise RuntimeError(f"{out}/split.json: {part} frames differ from the written split")
    result = out / "test.json"
    result.unlink(missing_ok=True)  # an earlier run's, which evaluate would not overwrite
    evaluate = [str(BIN / "euclidnn"), "evaluate", str(out / "model.safetensors"),
                str(work / "test.xyz"), "--json", str(result)]  # fmt: skip
    run_logged(evaluate, work / "logs" / f"{name}-evaluate.log", args.threads, 1800)
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    curve = [(float(r["seconds"]) / 60, float(r["forces_mae_meV_per_A"])) for r in rows]
    epochs, seconds = float(rows[-1]["epoch"]), float(rows[-1]["seconds"])
    return {"test": json.loads(result.read_text()), "curve": curve, "epochs": epochs,
            "train_seconds": seconds, "wall_seconds": wall, "command": " ".join(train)}  # fmt: skip


def runners(work: Path, data: dict, args) -> dict:
    """Name -> a function that trains and tests that row."""
    ours = lambda model: our_settings(model, work, data)  # noqa: E731
    mace_size = lambda: {"hidden_irreps": "32x0e + 32x1o", "num_interactions": 2,  # noqa: E731
                         "r_max": ours("nequip")["r_max"]}  # fmt: skip
    return {
        "ours-nequip": lambda: run_ours("nequip", work, data, args),
        "ours-allegro": lambda: run_ours("allegro", work, data, args),
        "ours-schnet": lambda: run_ours("schnet", work, data, args),
        **{
            f"ours-{model}-cosine": (
                lambda model=model: run_ours(model, work, data, args, "cosine")
            )
            for model in ("nequip", "allegro", "schnet")
        },
        "nequip-pkg": lambda: run_nequip("nequip-pkg", work, data, args),
        "allegro-pkg": lambda: run_nequip("allegro-pkg", work, data, args),
        "schnetpack": lambda: run_schnetpack(work, data, args),
        "mace": lambda: run_mace("mace", work, data, args),
        "nequip-pkg-matched": lambda: run_nequip(
            "nequip-pkg-matched", work, data, args, ours("nequip")
        ),
        "allegro-pkg-matched": lambda: run_nequip(
            "allegro-pkg-matched", work, data, args, ours("allegro")
        ),
        "mace-matched": lambda: run_mace("mace-matched", work, data, args, mace_size()),
    }


def report(results: dict, work: Path, data: dict) -> None:
    """Print the table, write results.json and curves.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for r in results.values():
        r["frames_per_s"] = r["epochs"] * data["n_train"] / r["train_seconds"]
    force = {name: r["test"]["forces_mae_meV_per_A"] for name, r in results.items()}
    ours = [force[m] for m in OURS if m in force]
    tuned = [force[m] for m in OURS + COSINE if m in force]
    peers = [force[m] for m in PEERS + MATCHED if m in force]
    ratio = min(ours) / min(peers) if ours and peers else None
    head = f"{'model':<19} {'F MAE meV/Å':>12} {'F RMSE':>8} {'E MAE meV/at':>13} {'E MAE meV':>10} {'epochs':>7} {'frames/s':>9}"
    print(head)
    for name, r in results.items():
        t = r["test"]
        print(f"{name:<19} {t['forces_mae_meV_per_A']:12.2f} {t['forces_rmse_meV_per_A']:8.2f} "
              f"{t['energy_per_atom_mae_meV']:13.3f} {t['energy_mae_meV']:10.2f} "
              f"{r['epochs']:7.2f} {r['frames_per_s']:9.1f}")  # fmt: skip
    if ratio is not None:
        print(f"our best force MAE (defaults) / the best peer's: {ratio:.3f} (goal ≤ 0.5)")
        if min(tuned) < min(ours):
            print(f"  with --schedule cosine rows as well: {min(tuned) / min(peers):.3f}")
    sizes = {k: data[k] for k in ("name", "n_train", "n_valid", "n_test")}
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
    parser.add_argument("--work", default=None,
                        help="work and result folder (default runs/train-accuracy[-DATA])")  # fmt: skip
    parser.add_argument("--data", choices=("ethanol", "lithium-phosphate"), default="ethanol")
    parser.add_argument("--quick", action="store_true", help="100/50/50 frames (smoke test)")
    parser.add_argument("--matched", action="store_true", help="add the peers at our model size")
    parser.add_argument("--models", nargs="+", choices=MODELS,
                        help="run only these (earlier results in results.json are kept)")  # fmt: skip
    parser.add_argument("--mace-python", default=str(ROOT / ".venv-mace" / "bin" / "python"),
                        help="the Python of MACE's venv")  # fmt: skip
    args = parser.parse_args()
    print(header(), flush=True)
    args.limit = 60 * args.minutes + 1200  # setup (statistics, data) + a stop at an epoch's end
    suffix = "" if args.data == "ethanol" else f"-{args.data}"
    work = Path(args.work or f"runs/train-accuracy{suffix}").resolve()
    data = write_data(work, args.data, args.quick)
    print(f"data: {args.data}, {data['n_train']} train, {data['n_valid']} valid, "
          f"{data['n_test']} test in {work}")  # fmt: skip
    previous = work / "results.json"
    kept = json.loads(previous.read_text()) if previous.is_file() else {}
    same = kept.get("data") == {k: data[k] for k in ("name", "n_train", "n_valid", "n_test")}
    results = kept["results"] if same else {}  # earlier runs on the same data
    table = runners(work, data, args)
    names = args.models or list(OURS + PEERS + (MATCHED if args.matched else ()))
    for name in names:
        print(f"== {name}: {args.minutes:g} min, {args.threads} threads", flush=True)
        try:
            results[name] = table[name]()
        except Exception as error:  # a peer that breaks must not lose the others' rows
            print(f"  {name} failed: {type(error).__name__}: {error}", flush=True)
            continue
        results[name]["minutes"] = args.minutes
        report({m: results[m] for m in MODELS if m in results}, work, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
