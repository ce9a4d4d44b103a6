"""From a structure and a reference method to a potential, without a data set: active learning
with a committee of models (euclidnn.learn).

Seed frames (rattled copies, or a short xTB MD) are labelled; a committee of K models is
trained on every label; committee-mean NVT MD explores at each --temperature; frames on which
the committee disagrees (σ_F, the largest per-atom spread of the members' forces, between
--sigma-low and --sigma-high) are labelled; and again, until an exploration of the full
--explore-steps finds no frame above --sigma-low, or --max-labels, --minutes or
--max-iterations is spent.

Examples:
  euclidnn learn ethanol --label gfn2-xtb --temperature 300 500 --max-labels 200 --out runs/al
  euclidnn learn cluster.xyz --label emt --temperature 600 --committee 3 --out runs/cu
  euclidnn learn ethanol --label gfn2-xtb --temperature 500 --out runs/al --resume

--out holds labels.xyz (every labelled frame), log.csv (one row per iteration), state.json,
iteration-NNN/ (committee/member-k/ run folders, exploration.json, selection.xyz, summary.json)
and report/ (labels.png, sigma.png, stability.png). A killed run continues with --resume and
never labels a frame twice. The final committee: the last iteration-NNN/committee/ (evaluate
it with `euclidnn evaluate --committee FOLDER DATA`).

σ bounds (eV/Å): below --sigma-low (default 0.05) the committee agrees, about the force error a
small model reaches on its own training distribution (tens of meV/Å for a small molecule);
above --sigma-high (default 0.5) its spread is a large part of the thermal forces themselves
(~1 eV/Å at 300–500 K), so the configuration is taken as unphysical: it is not labelled, and
the MD restarts from the last frame with σ_F ≤ --sigma-low.
"""

from __future__ import annotations

import argparse
import shutil

#: reference names that are not levels of theory: ASE's calculators (cheap, for tests, demos)
ASE_REFERENCES = {"emt": ("ase.calculators.emt", "EMT")}
#: what a run writes into --out (removed by --overwrite; other files are left alone)
RUN_ENTRIES = ("state.json", "labels.xyz", "log.csv", "report", "seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn learn``."""
    from euclidnn.cli.config_io import positive_int
    from euclidnn.learn import SIGMA_HIGH, SIGMA_LOW

    parser.add_argument(
        "structures",
        nargs="+",
        metavar="STRUCTURE",
        help="xyz/extxyz file (a periodic cell: Lattice= and pbc), shipped molecule or ASE g2 name",
    )
    parser.add_argument(
        "--label",
        required=True,
        help="reference method: gfn2-xtb, gfn1-xtb (tblite), pbe or another PySCF functional "
        "or hf (with --basis), emt (ASE's EMT: Al, Cu, Ag, Au, Ni, Pd, Pt; for tests)",
    )
    parser.add_argument("--basis", default="def2-svp", help="basis of HF/DFT (def2-svp)")
    parser.add_argument(
        "--temperature", type=float, nargs="+", required=True, help="K of the exploration MD"
    )
    parser.add_argument("--committee", type=int, default=4, help="K, models (≥ 2; default 4)")
    parser.add_argument("--max-labels", type=int, default=200, help="label budget (200)")
    parser.add_argument(
        "--sigma-low",
        type=float,
        default=SIGMA_LOW,
        help=f"eV/Å; frames below it are known (default {SIGMA_LOW}; see above)",
    )
    parser.add_argument(
        "--sigma-high",
        type=float,
        default=SIGMA_HIGH,
        help=f"eV/Å; frames above it are unphysical (default {SIGMA_HIGH}; see above)",
    )
    parser.add_argument("--minutes", type=float, help="wall-clock budget of the whole run")
    parser.add_argument("--max-iterations", type=positive_int, default=20)
    parser.add_argument("--model", choices=("nequip", "schnet", "allegro"), help="default nequip")
    parser.add_argument("--config", help="YAML training config of every member")
    parser.add_argument(
        "--train-minutes", type=float, default=1.0, help="per member and iteration (1)"
    )
    parser.add_argument("--max-epochs", type=positive_int, default=300, help="per fit (300)")
    parser.add_argument("--seed-frames", type=positive_int, default=20, help="starting labels")
    parser.add_argument(
        "--seed-from",
        choices=("rattle", "md"),
        help="seed frames: rattled copies (0.05 Å) or a short GFN2-xTB MD (default: md for "
        "xTB references, rattle otherwise)",
    )
    parser.add_argument(
        "--explore-steps", type=positive_int, default=2000, help="requested MD length (2000)"
    )
    parser.add_argument(
        "--first-explore-steps",
        type=positive_int,
        default=250,
        help="MD steps of the first exploration, doubled each iteration (250)",
    )
    parser.add_argument("--timestep", type=float, default=0.5, help="fs (0.5)")
    parser.add_argument(
        "--max-selected", type=positive_int, default=20, help="labels per iteration (20)"
    )
    parser.add_argument("--workers", type=positive_int, default=1, help="labelling processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=positive_int, help="CPU threads for PyTorch")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--overwrite", action="store_true", help="start anew in --out")


def _reference(args):
    """The reference of --label: an ASE calculator class, or a checked level of theory."""
    import importlib

    from euclidnn.data.label import Level

    name = args.label.lower()
    if name in ASE_REFERENCES:
        module, attribute = ASE_REFERENCES[name]
        return getattr(importlib.import_module(module), attribute)
    level = Level(name, basis=None if name in ("gfn2-xtb", "gfn1-xtb") else args.basis)
    try:
        level.check()
    except ValueError as err:
        raise ValueError(f"--label {args.label}: {err}") from None
    return level


def _learn_config(args, reference):
    from euclidnn.data.label import Level
    from euclidnn.learn import LearnConfig

    checks = [
        (args.committee >= 2, f"--committee {args.committee}: a committee needs ≥ 2 models"),
        (args.max_labels >= 1, f"--max-labels {args.max_labels}: the label budget must be ≥ 1"),
        (
            args.minutes is None or args.minutes > 0,
            f"--minutes {args.minutes}: the time budget must be > 0",
        ),
        (
            0 <= args.sigma_low < args.sigma_high,
            f"--sigma-low {args.sigma_low} must be ≥ 0 and below --sigma-high {args.sigma_high}",
        ),
        (
            args.seed_frames <= args.max_labels,
            f"--seed-frames {args.seed_frames} exceeds --max-labels {args.max_labels}",
        ),
        (all(t > 0 for t in args.temperature), "--temperature: temperatures must be > 0 K"),
        (args.train_minutes > 0, "--train-minutes: must be > 0"),
        (args.timestep > 0, "--timestep: must be > 0 fs"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    xtb = isinstance(reference, Level) and reference.is_xtb
    return LearnConfig(
        temperatures=tuple(args.temperature),
        committee=args.committee,
        sigma_low=args.sigma_low,
        sigma_high=args.sigma_high,
        max_labels=args.max_labels,
        minutes=args.minutes,
        max_iterations=args.max_iterations,
        seed_frames=args.seed_frames,
        seed_from=args.seed_from or ("md" if xtb else "rattle"),
        first_explore_steps=min(args.first_explore_steps, args.explore_steps),
        explore_steps=args.explore_steps,
        timestep=args.timestep,
        max_selected=args.max_selected,
        workers=args.workers,
        seed=args.seed,
    )


def _train_config(args):
    """Every member's training config: --config, the model and this command's budget."""
    from euclidnn.cli.config_io import check_model_settings, load_config, model_settings

    config = load_config(args.config)
    if args.model:
        config = config.replace(model={"name": args.model})
    run = {"minutes": args.train_minutes, "max_epochs": args.max_epochs, "seed": args.seed}
    config = check_model_settings(config.replace(run=run))
    return config.replace(
        model={"settings": model_settings(config)}, optimizer={"lr": config.learning_rate}
    )


def _structures(names: list[str]):
    from euclidnn.data.label import load_molecule
    from euclidnn.data.label.inputs import check_structure

    structures = []
    for name in names:
        atoms = load_molecule(name)
        check_structure(atoms, name)
        structures.append(atoms)
    return structures


def _out(args):
    """--out checked (new or empty; with --resume a run's folder; with --overwrite a run's own
    entries removed first) and what it held before (for :func:`removed_on_failure`)."""
    from euclidnn.cli.config_io import Before, check_output, new_output_folder

    out = check_output(args.out, "--out", folder=True)
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite: give one (continue the run, or start anew)")
    if args.resume:
        if not (out / "state.json").is_file():
            raise FileNotFoundError(f"--out {out}: nothing to resume (no state.json)")
        return out, Before.of(out)
    if args.overwrite and out.is_dir():
        for entry in [*RUN_ENTRIES, *(p.name for p in out.glob("iteration-*"))]:
            path = out / entry
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    return out, new_output_folder(out, "--out", args.overwrite)


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn learn``: arguments, reference and structures checked before --out is
    made; then the loop. A run that fails before its first step leaves --out as it was."""
    import torch

    from euclidnn.cli.config_io import new_model, removed_on_failure
    from euclidnn.learn import learn
    from euclidnn.learn.labelling import reference_name
    from euclidnn.train import data_statistics

    reference = _reference(args)
    config = _learn_config(args, reference)
    train_config = _train_config(args)
    structures = _structures(args.structures)
    out, before = _out(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    r_max = train_config.model.settings["r_max"]

    def make_model(training, seed: int):
        torch.manual_seed(seed)  # the member's initial weights (this process is the CLI's)
        return new_model(train_config, data_statistics(training, r_max))

    print(
        f"learn: {len(structures)} structure(s), {reference_name(reference)}, "
        f"{train_config.model.name} committee of {config.committee}, T = "
        f"{', '.join(f'{t:g}' for t in config.temperatures)} K, σ_F in "
        f"({config.sigma_low}, {config.sigma_high}] eV/Å, ≤ {config.max_labels} labels → {out}",
        flush=True,
    )
    try:
        with removed_on_failure(out, before, lambda: (out / "state.json").is_file()):
            result = learn(
                structures,
                reference,
                config,
                train_config,
                make_model,
                out,
                names=args.structures,
                log=lambda line: print(line, flush=True),
            )
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"interrupted; {out} keeps the run: rerun the command with --resume to continue"
        ) from None
    print(f"stopped: {result.stop_reason}; {result.labels} labels in {out / 'labels.xyz'}")
    print(f"committee: {result.committee[0].parents[1] if result.committee else 'none'}")
    print(f"report: {out / 'report'}")
    return 0
