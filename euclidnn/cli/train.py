"""Train a potential (NequIP, Allegro or SchNet) on labelled structures; no config needed.

Examples:
  euclidnn train data.xyz --minutes 30                 # validation split taken from data.xyz
  euclidnn train md17_ethanol.npz --energy-unit kcal/mol --model schnet --out runs/eth
  euclidnn train ethanol --index :1250 --minutes 5      # a shipped data set, by name
  euclidnn train data.xyz --config run.yaml --print-config
  torchrun --standalone --nproc-per-node 2 -m euclidnn train data.xyz   # data-parallel, 2 processes

The run folder holds model.safetensors (best validation, EMA weights), last.ckpt (resume with
--resume), log.csv, config.yaml (the resolved config) and split.json (which frames were used).
A run that fails before its first checkpoint removes what it wrote, so it can be rerun as is;
Ctrl-C writes a checkpoint and prints the command that resumes the run.

Training refuses data whose RMS force exceeds data.max_force_rms (10 eV/Å: a wrong unit, e.g.
kcal/mol/Å read as eV/Å) and warns of other signs of one (see euclidnn/data/sanity.py).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import shlex
import sys
import time
from pathlib import Path

import yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn train``."""
    from euclidnn.cli.config_io import add_read_arguments

    parser.add_argument(
        "train", help="training data: a file (extxyz, ASE db, npz, …) or shipped set"
    )
    parser.add_argument("--valid", help="validation data (default: a split of TRAIN)")
    parser.add_argument("--model", choices=("nequip", "schnet", "allegro"), help="default: nequip")
    parser.add_argument("--config", help="YAML config (see euclidnn/train/config.py)")
    parser.add_argument("--print-config", action="store_true", help="show the resolved config")
    parser.add_argument(
        "--minutes",
        type=float,
        help="wall-clock budget of the whole fit (with --schedule cosine, linear or auto the "
        "learning rate warms up, then decays to its minimum exactly at this deadline)",
    )
    parser.add_argument(
        "--schedule",
        choices=("auto", "plateau", "cosine", "linear"),
        help="learning-rate schedule (schedule.kind): plateau = lower the rate when the "
        "validation loss stops improving, with early stopping; cosine/linear = warm-up, then "
        "decay to schedule.min_lr at the --minutes deadline, no early stopping; auto = cosine "
        "with --minutes, plateau without (default: plateau, which won at 5 minutes on ethanol)",
    )
    parser.add_argument(
        "--max-epochs",
        type=int,
        help="at most this many epochs (default 1000, none with --minutes: the budget ends it)",
    )
    parser.add_argument("--n-train", type=int, help="training structures to use (default all)")
    parser.add_argument("--n-valid", type=int, help="validation structures split from TRAIN")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--dtype", choices=("float32", "float64"))
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    parser.add_argument("--out", help="run folder (default runs/train-<date>-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_read_arguments(parser)


def _config(args):
    """The resolved config: defaults ← --config file ← command-line flags; the model's settings
    and the learning rate in full, as the run uses them (what config.yaml records)."""
    from euclidnn.cli.config_io import load_config, model_settings

    changes = {
        "model": {"name": args.model},
        "run": {
            "minutes": args.minutes,
            "max_epochs": args.max_epochs,
            "seed": args.seed,
            "dtype": args.dtype,
            "threads": args.threads,
        },
        "data": {"n_train": args.n_train, "n_valid": args.n_valid},
        "schedule": {"kind": args.schedule},
    }
    changes = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in changes.items()}
    config = load_config(args.config, changes)
    return config.replace(
        model={"settings": model_settings(config)}, optimizer={"lr": config.learning_rate}
    )


def _run_folder(args, lead: bool, wait=lambda: None):
    """The run folder, checked (and created by the lead process), and what it was before
    (:class:`~euclidnn.cli.config_io.Before`). ``wait`` (the process group's barrier) holds the
    lead back until every process has looked at the folder: what the lead writes (its probe
    file) would otherwise make the folder look taken to a process that looks later."""
    from euclidnn.cli.config_io import Before, check_output

    out = check_output(
        args.out or f"runs/train-{datetime.datetime.now():%Y%m%d-%H%M%S}", "--out", folder=True
    )
    if args.resume:
        if not (out / "last.ckpt").is_file():
            raise FileNotFoundError(f"{out / 'last.ckpt'}: nothing to resume (no checkpoint)")
        return out, Before.of(out)
    before = Before.of(out)
    if before.entries and not args.overwrite:
        raise FileExistsError(f"{out}: run folder is not empty; use --resume or --overwrite")
    wait()
    if lead:
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise PermissionError(f"{out}: cannot write the run folder ({err.strerror})") from None
    return out, before


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn train``: config → processes → run folder → data → model → fit. A run that
    fails before its first checkpoint leaves the run folder as it found it."""
    import torch.distributed as dist

    from euclidnn.cli.config_io import read_options, removed_on_failure
    from euclidnn.train import TrainingInterrupted

    config = _config(args)
    if args.print_config and not args.resume:
        return _print_config(config)
    read_options(args, config)  # the unit options checked before the run folder is made
    distributed = _start_processes()
    lead = not distributed or dist.get_rank() == 0
    say = functools.partial(print, flush=True) if lead else (lambda *a, **k: None)
    out, before = _run_folder(args, lead, dist.barrier if distributed else lambda: None)
    if distributed:
        dist.barrier()
    started = time.time_ns()

    def resumable() -> bool:  # a resumed run, or one that wrote a checkpoint, is kept
        checkpoint = out / "last.ckpt"
        return args.resume or (checkpoint.is_file() and checkpoint.stat().st_mtime_ns >= started)

    try:
        with removed_on_failure(out, before, resumable) if lead else contextlib.nullcontext():
            status = _train(args, config, out, lead, say)
    except TrainingInterrupted as stop:
        raise KeyboardInterrupt(f"{stop}; resume with: {_resume_command(args, out)}") from None
    if distributed:  # together: a process that left first aborted the other's gloo threads
        dist.barrier()
        dist.destroy_process_group()
    return status


def _train(args, config, out: Path, lead: bool, say) -> int:
    """Data → model → fit, in the checked run folder ``out``."""
    import torch

    from euclidnn.train import fit

    checkpoint = None
    if args.resume:
        checkpoint, config = _resumed(args, out)
        if args.print_config:
            return _print_config(config)
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    (train, train_names), (valid, valid_names) = _read_split(args, config, say, lead)
    if checkpoint is not None:
        _check_same_split(out, train_names, valid_names)
        model = checkpoint.model
    else:
        model = _new_model(config, (train, train_names), say)
    model = model.to(dtype=getattr(torch, config.run.dtype), device=_device())
    say(
        f"model: {type(model).__name__} {json.dumps(_short(model.config))}, "
        f"{sum(p.numel() for p in model.parameters())} parameters, {config.run.dtype}"
    )
    if lead:
        _write_run_files(out, config, train_names, valid_names)
    result = fit(
        model,
        train,
        valid,
        config,
        out,
        resume=args.resume,
        train_names=train_names,
        valid_names=valid_names,
        progress=not args.quiet and sys.stderr.isatty(),
        log=say,
    )
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.best_metrics.items())
    say(f"best validation: {metrics}")
    say(f"run folder: {out} (model.safetensors, last.ckpt, log.csv, config.yaml)")
    return 0


def _resume_command(args, out: Path) -> str:
    """The command that resumes this run: its data arguments, the run folder, --resume."""
    words = ["euclidnn", "train", args.train]
    for option in (
        "valid",
        "index",
        "format",
        "energy_unit",
        "length_unit",
        "forces_unit",
        "stress_unit",
        "energy_key",
        "forces_key",
        "stress_key",
    ):
        value = getattr(args, option)
        if value is not None and not (option == "index" and value == ":"):
            words += [f"--{option.replace('_', '-')}", value]
    words += ["--out", str(out), "--resume"] + (["--quiet"] if args.quiet else [])
    return shlex.join(words)


def _print_config(config) -> int:
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    return 0


def _start_processes() -> bool:
    """Join the process group when started by ``torchrun`` (WORLD_SIZE > 1); whether so."""
    import torch
    import torch.distributed as dist

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return distributed


def _resumed(args, out: Path):
    """The checkpoint to resume, and its config with the new budget (--minutes,
    --max-epochs) if one is given."""
    from euclidnn.train import TrainConfig, load_checkpoint

    checkpoint = load_checkpoint(out / "last.ckpt")
    saved = TrainConfig.from_dict(checkpoint.config)
    budget = {k: v for k, v in (("minutes", args.minutes), ("max_epochs", args.max_epochs)) if v}
    return checkpoint, saved.replace(run=budget) if budget else saved


def _read_split(args, config, say, lead: bool = True):
    """(structures, names) for training and for validation: --valid, or a split of TRAIN;
    the labels' scale checked (:func:`euclidnn.data.sanity.label_scale_warnings`)."""
    from euclidnn.cli.config_io import check_label_scales, read_data, read_options
    from euclidnn.data.splits import split_indices

    options = read_options(args, config)
    structures, names = read_data(args.train, args.index, options)
    check_label_scales("train", args.train, structures, config.data.max_force_rms, lead)
    n_valid = 0
    if not args.valid:
        n_valid = config.data.n_valid or min(max(len(structures) // 10, 1), 1000)
        if n_valid >= len(structures):
            raise ValueError(
                f"{args.train}: {len(structures)} structures leave none for training after a "
                f"validation split of {n_valid}; give --valid or a smaller --n-valid"
            )
    n_train = config.data.n_train or len(structures) - n_valid
    if n_train + n_valid > len(structures):
        raise ValueError(
            f"{args.train}: --n-train {n_train} and a validation split of {n_valid} need "
            f"{n_train + n_valid} structures, the data have {len(structures)}"
        )
    parts = split_indices(len(structures), n_train, n_valid, 0, seed=config.run.seed)
    train = [structures[i] for i in parts.train], [names[i] for i in parts.train]
    if args.valid:
        valid = read_data(args.valid, ":", options)
        check_label_scales("train", args.valid, valid[0], config.data.max_force_rms, lead)
    else:
        valid = [structures[i] for i in parts.valid], [names[i] for i in parts.valid]
        seed = config.run.seed
        say(f"validation: {len(valid[0])} structures split from {args.train} (seed {seed})")
    say(f"training: {len(train[0])} structures; validation: {len(valid[0])}")
    return train, valid


def _check_same_split(out: Path, train_names: list[str], valid_names: list[str]) -> None:
    """A resumed run must train on the structures it started with (split.json)."""
    recorded = out / "split.json"
    if not recorded.is_file():
        return
    try:
        split = json.loads(recorded.read_text())
        recorded_names = (split["train"], split["valid"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{recorded}: not a split written by euclidnn train ({err!r})") from None
    if recorded_names != (train_names, valid_names):
        raise ValueError(
            f"{recorded}: the run was trained on other structures; resume with the same data "
            "arguments (TRAIN, --valid, --index, --n-train, --n-valid)"
        )


def _new_model(config, train, say):
    """The config's model, initialised with the training set's statistics (which refuse, by
    name, a structure without the label they are fitted to; ``fit`` checks the rest)."""
    import torch

    from euclidnn.cli.config_io import new_model
    from euclidnn.train import data_statistics

    structures, names = train
    stats = data_statistics(
        structures,
        config.model.settings["r_max"],  # resolved by _config: the one r_max of the run
        property=config.loss.property,
        per_atom=config.loss.property_per_atom,
        names=names,
    )
    for note in stats.notes:
        say(f"statistics: {note}")
    torch.manual_seed(config.run.seed)
    return new_model(config, stats)


def _write_run_files(out: Path, config, train_names: list[str], valid_names: list[str]) -> None:
    from euclidnn.cli.config_io import write_text, write_yaml

    write_yaml(out / "config.yaml", config.to_dict())
    split = {"train": train_names, "valid": valid_names}
    write_text(out / "split.json", json.dumps(split, indent=0))


def _device():
    """CUDA when present (the process's local GPU under torchrun), else the CPU."""
    import torch

    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device("cpu")


def _short(config) -> dict:
    """The config without the long fitted tuples, for the log."""
    import dataclasses

    values = dataclasses.asdict(config)
    values = values.get("trunk", values)
    return {k: v for k, v in values.items() if k not in ("energy_shifts", "energy_scales")}
