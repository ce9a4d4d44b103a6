"""Train a potential (NequIP or SchNet) on labelled structures; no config needed.

Examples:
  euclidnn train data.xyz --minutes 30                 # validation split taken from data.xyz
  euclidnn train md17_ethanol.npz --energy-unit kcal/mol --model schnet --out runs/eth
  euclidnn train ethanol --index :1250 --minutes 5      # a shipped data set, by name
  euclidnn train data.xyz --config run.yaml --print-config
  torchrun --nproc-per-node 2 -m euclidnn train data.xyz   # data-parallel, 2 processes

The run folder holds model.safetensors (best validation, EMA weights), last.ckpt (resume with
--resume), log.csv, config.yaml (the resolved config) and split.json (which frames were used).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import sys
from pathlib import Path

import yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn train``."""
    from euclidnn.cli.config_io import add_read_arguments

    parser.add_argument(
        "train", help="training data: a file (extxyz, ASE db, npz, …) or shipped set"
    )
    parser.add_argument("--valid", help="validation data (default: a split of TRAIN)")
    parser.add_argument("--model", choices=("nequip", "schnet"), help="default: nequip")
    parser.add_argument("--config", help="YAML config (see euclidnn/train/config.py)")
    parser.add_argument("--print-config", action="store_true", help="show the resolved config")
    parser.add_argument("--minutes", type=float, help="wall-clock budget of the whole fit")
    parser.add_argument("--max-epochs", type=int)
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
    """The resolved config: defaults ← --config file ← command-line flags."""
    from euclidnn.cli.config_io import check_model_settings, load_config, model_settings

    config = load_config(args.config)
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
    }
    changes = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in changes.items()}
    config = check_model_settings(config.replace(**{s: kv for s, kv in changes.items() if kv}))
    # resolved: the model's settings in full (training defaults included) and the learning
    # rate, as the run uses them
    return config.replace(
        model={"settings": model_settings(config)}, optimizer={"lr": config.learning_rate}
    )


def _run_folder(args, lead: bool) -> Path:
    out = Path(args.out or f"runs/train-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    if args.resume:
        if not (out / "last.ckpt").is_file():
            raise FileNotFoundError(f"{out / 'last.ckpt'}: nothing to resume (no checkpoint)")
        return out
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(f"{out}: run folder is not empty; use --resume or --overwrite")
    if lead:
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise ValueError(f"{out}: cannot write the run folder ({err.strerror})") from None
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn train``."""
    import torch
    import torch.distributed as dist

    from euclidnn.cli.config_io import (
        model_settings,
        new_model,
        read_data,
        read_options,
        write_text,
        write_yaml,
    )
    from euclidnn.data.splits import split_indices
    from euclidnn.train import TrainConfig, data_statistics, fit, load_checkpoint
    from euclidnn.train.loop import check_labels

    config = _config(args)
    if args.print_config and not args.resume:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    lead = rank == 0
    say = functools.partial(print, flush=True) if lead else (lambda *a, **k: None)
    out = _run_folder(args, lead)
    if distributed:
        dist.barrier()

    if args.resume:
        checkpoint = load_checkpoint(out / "last.ckpt")
        saved = TrainConfig.from_dict(checkpoint.config)
        budget = {
            k: v for k, v in (("minutes", args.minutes), ("max_epochs", args.max_epochs)) if v
        }
        config = saved.replace(run=budget) if budget else saved
        if args.print_config:
            print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
            return 0
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    dtype = getattr(torch, config.run.dtype)

    options = read_options(args, config)
    structures, names = read_data(args.train, args.index, options)
    if args.valid:
        valid, valid_names = read_data(args.valid, ":", options)
        n_valid = 0
    else:
        n_valid = config.data.n_valid or min(max(len(structures) // 10, 1), 1000)
        if n_valid >= len(structures):
            raise ValueError(
                f"{args.train}: {len(structures)} structures leave none for training after a "
                f"validation split of {n_valid}; give --valid or a smaller --n-valid"
            )
    n_train = config.data.n_train or len(structures) - n_valid
    parts = split_indices(len(structures), n_train, n_valid, 0, seed=config.run.seed)
    train, train_names = [structures[i] for i in parts.train], [names[i] for i in parts.train]
    if not args.valid:
        valid, valid_names = [structures[i] for i in parts.valid], [names[i] for i in parts.valid]
        say(f"validation: {len(valid)} structures split from {args.train} (seed {config.run.seed})")
    say(f"training: {len(train)} structures; validation: {len(valid)}")
    check_labels(train, train_names, config, "training")
    check_labels(valid, valid_names, config, "validation")

    if args.resume:
        model = checkpoint.model
        recorded = (
            json.loads((out / "split.json").read_text()) if (out / "split.json").is_file() else None
        )
        if recorded is not None and (recorded["train"], recorded["valid"]) != (
            train_names,
            valid_names,
        ):
            raise ValueError(
                f"{out / 'split.json'}: the run was trained on other structures; resume with the "
                "same data arguments (TRAIN, --valid, --index, --n-train, --n-valid)"
            )
    else:
        r_max = model_settings(config)["r_max"]
        stats = data_statistics(
            train, r_max, property=config.loss.property, per_atom=config.loss.property_per_atom
        )
        for note in stats.notes:
            say(f"statistics: {note}")
        torch.manual_seed(config.run.seed)
        model = new_model(config, stats)
    model = model.to(dtype=dtype, device=_device())
    say(
        f"model: {type(model).__name__} {json.dumps(_short(model.config))}, "
        f"{sum(p.numel() for p in model.parameters())} parameters, {config.run.dtype}"
    )
    if lead:
        write_yaml(out / "config.yaml", config.to_dict())
        split = {"train": train_names, "valid": valid_names}
        write_text(out / "split.json", json.dumps(split, indent=0))
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
    if distributed:
        dist.destroy_process_group()
    return 0


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
