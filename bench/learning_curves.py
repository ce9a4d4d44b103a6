"""Learning curves of our models with every fit converged: the test force MAE against the
training-set size N, a power law MAE ∝ N^−β through it, for SchNet, NequIP and Allegro on
the shipped ethanol set (GFN2-xTB, 500 K).

    .venv/bin/python bench/learning_curves.py --out runs/learning-curves
    .venv/bin/python bench/learning_curves.py --out runs/learning-curves --merge-only

One ``euclidnn learning-curve`` per model (defaults of ``euclidnn train``: the plateau
schedule with early stopping), ``--jobs`` of them at a time with one thread each; the same
seed gives every model the same nested training sets, validation set and test set. A fit
counts as converged when it stopped by its own rule (early stopping, or the rate at its floor
with no improvement), not by ``--minutes-per-fit`` or ``--max-epochs``: both caps are set far
above what the fits need, and the table says, per fit, how it stopped. Writes
OUT/<model>/ (each command's folder), OUT/learning_curves.json and OUT/learning_curves.png,
and prints a Markdown table. ``--merge-only`` merges folders already there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/learning-curves")
    parser.add_argument("--models", default="schnet,nequip,allegro")
    parser.add_argument("--sizes", default="20,40,80,160,320")
    parser.add_argument("--n-valid", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--minutes-per-fit", type=float, default=20.0)
    parser.add_argument("--max-epochs", type=int, default=5000)
    parser.add_argument("--jobs", type=int, default=2, help="commands at a time (1 thread each)")
    parser.add_argument("--merge-only", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    models = args.models.split(",")
    if not args.merge_only:
        try:
            run_all(args, models, out)
        except KeyboardInterrupt:  # run_all has stopped every command it started
            raise SystemExit(
                "interrupted: the learning curves still running were stopped"
            ) from None
    merge(models, out)


def run_all(args, models: list[str], out: Path) -> None:
    """Every model's learning curve, ``args.jobs`` commands at a time; Ctrl-C stops them all."""
    out.mkdir(parents=True, exist_ok=True)
    euclidnn = Path(sys.executable).with_name("euclidnn")
    pending, running = list(models), {}
    try:
        while pending or running:
            while pending and len(running) < args.jobs:
                name = pending.pop(0)
                command = [
                    str(euclidnn), "learning-curve", "ethanol", "--models", name,
                    "--sizes", args.sizes, "--n-valid", str(args.n_valid),
                    "--n-test", str(args.n_test), "--minutes-per-fit", str(args.minutes_per_fit),
                    "--max-epochs", str(args.max_epochs), "--threads", "1", "--quiet",
                    "--out", str(out / name),
                ]  # fmt: skip
                log = open(out / f"{name}.log", "w")  # noqa: SIM115 (closed when it ends)
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                running[name] = (subprocess.Popen(command, stdout=log, stderr=log, env=env), log)
                print(f"started {name}: {' '.join(command)}", flush=True)
            time.sleep(5)
            for name, (process, log) in list(running.items()):
                if process.poll() is not None:
                    log.close()
                    del running[name]
                    status = "done" if process.returncode == 0 else f"failed ({process.returncode})"
                    print(f"{name}: {status}; log {out / f'{name}.log'}", flush=True)
    finally:
        for process, log in running.values():
            process.terminate()
            process.wait()
            log.close()


def merge(models: list[str], out: Path) -> None:
    """One table and one plot of the models' curves; a Markdown table on stdout."""
    from euclidnn.train.plots import learning_curve_plot

    curves = {}
    for name in models:
        path = out / name / "learning_curve.json"
        if not path.exists():
            print(f"{name}: no {path} (not run, or failed: see {out / f'{name}.log'})")
            continue
        curves[name] = json.loads(path.read_text())["models"][name]
        curves[name]["beta_converged"] = _converged_beta(curves[name])
    if not curves:
        raise SystemExit("nothing to merge")
    plot = learning_curve_plot(curves, out / "learning_curves.png", "test force MAE (meV/Å)")
    sizes = next(iter(curves.values()))["sizes"]
    columns = " | ".join(f"N = {n}" for n in sizes)
    print(f"\n| test force MAE (meV/Å) | {columns} | β (all) | β (converged fits) |")
    print("| --- |" + " ---: |" * (len(sizes) + 2))
    for name, curve in curves.items():
        cells = " | ".join(f"{e:.1f}" for e in curve["errors"])
        beta = f"{curve['beta']:.2f} ± {curve['beta_error']:.2f}"
        print(f"| {name} | {cells} | {beta} | {_beta_text(curve)} |")
    print("| epochs (model: per N) |" + " |" * (len(sizes) + 2))
    for name, curve in curves.items():
        fits = curve.get("fits", [])
        cells = [f"{f['epochs']:.0f}{'' if f['converged'] else ' (capped)'}" for f in fits]
        minutes = sum(f["minutes"] for f in fits)
        print(f"| {name} | " + " | ".join(cells) + f" | {minutes:.0f} min in all | |")
    capped = [
        f"{name} N = {size}"
        for name, curve in curves.items()
        for size, fit in zip(curve["sizes"], curve.get("fits", []))
        if not fit["converged"]
    ]
    print("\nevery fit converged" if not capped else f"\ncapped, not converged: {capped}")
    (out / "learning_curves.json").write_text(json.dumps(curves, indent=2))
    print(f"table: {out / 'learning_curves.json'}; plot: {plot}")


def _converged_beta(curve: dict) -> dict | None:
    """The power law through the converged fits alone (``sizes``, ``beta``, ``beta_error``,
    ``prefactor``), or None with fewer than three."""
    from euclidnn.train.curves import power_law_fit

    kept = [
        (n, e) for n, e, f in zip(curve["sizes"], curve["errors"], curve["fits"]) if f["converged"]
    ]
    if len(kept) < 3:
        return None
    return {"sizes": [n for n, _ in kept], **power_law_fit(*zip(*kept))._asdict()}


def _beta_text(curve: dict) -> str:
    """β ± σ through the converged fits, their sizes where some fits were capped."""
    law = curve["beta_converged"]
    if law is None:
        return "fewer than 3 converged"
    kept = law["sizes"]
    sizes = "" if len(kept) == len(curve["sizes"]) else f" (N = {kept[0]}–{kept[-1]})"
    return f"{law['beta']:.2f} ± {law['beta_error']:.2f}{sizes}"


if __name__ == "__main__":
    main()
