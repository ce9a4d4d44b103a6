"""Training speed alone and beside a second CPU job, for several OpenMP thread settings.

The workload is a short ``euclidnn train`` run (shipped ethanol, frames :300, 50 for
validation; ``--frames 1250 --n-valid 250``: the epoch of the 30-minute runs of
``bench/train_accuracy.py``; default NequIP, ``--max-epochs EPOCHS``) started as a
subprocess; its time is the median epoch of ``log.csv`` without the first (so imports, data
reading and the first epoch's warm-up are left out). It runs

- alone,
- beside a busy PyTorch job (``a @ a`` on a 384×384 matrix in a loop, default threads and
  libgomp's default wait policy: another user's job), and
- beside a second ``euclidnn train`` of the same workload with the same setting (two users
  of euclidnn, each with the same defaults),

for each setting below. The neighbour is started first and killed afterwards, always. Its own
speed is reported too (a fair share of two cores is about half its speed alone): the matmul
loop's rate while our job trains, and the other training's median epoch.

Settings (each names the environment of the training processes, before torch is imported):

- ``2 threads, libgomp default``: ``GOMP_SPINCOUNT=300000`` — the count libgomp uses when
  ``OMP_WAIT_POLICY`` is unset (about 3 ms of spinning at a barrier), i.e. euclidnn's
  behaviour before the CLI chose a policy; setting it explicitly makes the CLI leave it be;
- ``2 threads, PASSIVE``: ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once);
- ``2 threads, GOMP_SPINCOUNT=N``: a short spin before sleeping (``--spincounts``; libgomp
  counts about 100 000 spins a millisecond, so 1000 is ~10 µs, 10 000 ~0.1 ms);
- ``1 thread``: ``--threads 1`` (no OpenMP barriers at all);
- ``2 threads, as the CLI sets them``: none of the variables set, so the command's own
  default (``euclidnn.cli.__main__.OPENMP_DEFAULTS``) applies.

"2 threads" is PyTorch's default here (one per core). Timings on a machine shared with other
jobs are noisy: repeats are interleaved (every setting and condition once, then again) and
medians reported. Before each run the script waits (``--wait`` s at most) until other jobs use
less than ``--quiet`` of the CPUs, measures the share they used during the run (all CPU time
less this script's children's), and can repeat a run they disturbed (``--retries``; the least
disturbed attempt counts). The table shows that share.

    python bench/contention.py --epochs 8 --repeats 3 --timeout 45 [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import header

#: setting name -> (environment of the training processes, --threads or None for the default)
OPENMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: the busy neighbour; it prints (time, matmuls so far) every 0.2 s
MATMUL = """
import time, torch
a = torch.randn(384, 384)
count, last = 0, 0.0
while True:
    a @ a
    count += 1
    if time.time() > last + 0.2:
        last = time.time()
        print(last, count, flush=True)
"""


def settings(spincounts: list[int]) -> dict[str, tuple[dict[str, str], int | None]]:
    chosen = {
        "2 threads, libgomp default": ({"GOMP_SPINCOUNT": "300000"}, None),
        "2 threads, OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    }
    for n in spincounts:
        chosen[f"2 threads, GOMP_SPINCOUNT={n}"] = ({"GOMP_SPINCOUNT": str(n)}, None)
    chosen["1 thread"] = ({"OMP_WAIT_POLICY": "PASSIVE"}, 1)
    chosen["2 threads, as the CLI sets them"] = ({}, None)  # whatever this tree's main() sets
    return chosen


def environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_VARIABLES}
    return env | extra


def train_command(
    out: Path, epochs: int, threads: int | None, frames: tuple[int, int] = (300, 50)
) -> list[str]:
    command = [sys.executable, "-m", "euclidnn", "train", "ethanol", "--index", f":{frames[0]}"]
    command += ["--n-valid", str(frames[1]), "--max-epochs", str(epochs), "--out", str(out)]
    command += ["--overwrite", "--quiet"]
    return command + (["--threads", str(threads)] if threads else [])


def epoch_seconds(log: Path) -> list[float]:
    """Seconds of each epoch after the first, from a run's log.csv (empty if none yet)."""
    if not log.is_file():
        return []
    with log.open() as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    return [b - a for a, b in zip(seconds, seconds[1:])]


def start(command: list[str], env: dict[str, str], stdout=subprocess.DEVNULL, stderr=None):
    # a session of its own, so that stop() reaches the process and anything it started
    return subprocess.Popen(
        command, env=env, stdout=stdout, stderr=stderr or subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip


def stop(process: subprocess.Popen) -> str:
    """Terminate ``process`` (and its session) and return its output."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
    return out or ""


def matmul_rate(output: str, since: float, until: float) -> float | None:
    """Matmuls per second between the reports nearest ``since`` and ``until``."""
    reports = [tuple(map(float, line.split())) for line in output.splitlines() if line.strip()]
    inside = [(t, n) for t, n in reports if since - 0.5 <= t <= until + 0.5]
    if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.5:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def busy_cpu_seconds() -> float | None:
    """CPU seconds that all processes have used since boot (Linux's /proc/stat), or None."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # not idle, iowait


def children_cpu_seconds() -> float:
    """CPU seconds used by this process's finished (waited-for) children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over the next ``seconds`` (else the load average)."""
    before = busy_cpu_seconds()
    time.sleep(seconds)
    after = busy_cpu_seconds()
    if before is None or after is None:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    return (after - before) / (seconds * (os.cpu_count() or 1))


def wait_for_quiet(below: float, at_most: float) -> float:
    """Wait (at most ``at_most`` s) until other jobs keep less than ``below`` of the CPUs busy;
    returns the last busy fraction seen."""
    deadline = time.time() + at_most
    busy = cpu_busy()
    while busy >= below and time.time() < deadline:
        busy = cpu_busy()
    return busy


def measure(setting, condition: str, args, work: Path) -> dict:
    """One timed training in ``condition`` (:func:`run_once`), after waiting for a quiet
    machine, with the share of the CPUs that other jobs kept busy before and during it."""
    busy = wait_for_quiet(args.quiet, args.wait)
    wall, total, ours = time.time(), busy_cpu_seconds(), children_cpu_seconds()
    result = run_once(setting, condition, args, work)
    result["busy"] = busy
    if total is not None:
        others = busy_cpu_seconds() - total - (children_cpu_seconds() - ours)
        result["others"] = max(others, 0) / ((time.time() - wall) * (os.cpu_count() or 1))
    return result


def run_once(setting, condition: str, args, work: Path) -> dict:
    """One timed training (median epoch, seconds) in ``condition``, with its neighbour's speed."""
    env, threads = setting
    env = environment(env)
    neighbour = began = ended = None
    result = {}
    try:
        for folder in ("run", "neighbour"):  # no stale log from the run before
            (work / folder / "log.csv").unlink(missing_ok=True)
        if condition == "matmul":
            neighbour = start([sys.executable, "-c", MATMUL], environment({}), subprocess.PIPE)
        elif condition == "train":
            command = train_command(
                work / "neighbour", 100_000, threads, (args.frames, args.n_valid)
            )
            neighbour = start(command, env)
        if neighbour is not None:
            time.sleep(args.head_start)
        errors = (work / "stderr.txt").open("w+")
        process = start(
            train_command(work / "run", args.epochs, threads, (args.frames, args.n_valid)),
            env,
            stderr=errors,
        )
        began, deadline = None, time.time() + args.timeout
        try:
            while process.poll() is None and time.time() < deadline:
                if began is None and (work / "run" / "log.csv").is_file():
                    began = time.time()  # the first epoch is over: the timed part begins
                time.sleep(0.1)
        finally:
            ended = time.time()
            stop(process)
            errors.seek(0)
            if process.returncode not in (0, -signal.SIGTERM):
                raise RuntimeError(f"training failed: {errors.read()[-2000:]}")
            errors.close()
        times = epoch_seconds(work / "run" / "log.csv")
        result["seconds"] = statistics.median(times) if times else None
        result["epochs"] = len(times)
        if not times and began is not None:  # the second epoch took longer than this
            result["at_least"] = ended - began
        result["stalled"] = began is None  # not even the first epoch within the timeout
    finally:
        if neighbour is not None:
            output = stop(neighbour)
            if condition == "matmul" and ended is not None:
                result["neighbour"] = matmul_rate(output, began or ended, ended)
            else:
                times = epoch_seconds(work / "neighbour" / "log.csv")
                result["neighbour"] = statistics.median(times) if times else None
    return result


def matmul_alone(seconds: float = 4.0) -> float | None:
    process = start([sys.executable, "-c", MATMUL], environment({}), subprocess.PIPE)
    try:
        time.sleep(2.0)  # imports
        began = time.time()
        time.sleep(seconds)
    finally:
        output = stop(process)
    return matmul_rate(output, began, began + seconds)


def disturbance(result: dict) -> float:
    return result.get("others", 0.0)


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def epoch_time(runs: list[dict]) -> tuple[float | None, bool]:
    """The median epoch of ``runs`` and whether it is only a lower bound: a run in which not
    one epoch after the first finished counts with the time it waited for one."""
    values = [r["seconds"] if r["seconds"] is not None else r.get("at_least") for r in runs]
    bound = any(r["seconds"] is None and ("at_least" in r or r.get("stalled")) for r in runs)
    return median(values), bound


def fmt(value: float | None, bound: bool = False) -> str:
    """Seconds; ``>x`` a lower bound; ``stalled`` where no run timed a single epoch."""
    if value is None:
        return "stalled" if bound else "–"
    return f"{'>' if bound else ''}{value:.3g}"


def table(results: dict, settings: list[str], conditions: list[str], matmul: float | None):
    """The Markdown table: the share of the CPUs that other jobs used during the runs
    (median), epoch alone, beside each neighbour, the ratio, the neighbour's speed as a share
    of its speed alone."""
    header = "| setting | other jobs' CPU share | alone (s/epoch) |"
    rule = "| --- | ---: | ---: |"
    for c in conditions[1:]:
        header += f" beside {c} (s/epoch) | ratio | {c}'s own speed |"
        rule += " ---: | ---: | ---: |"
    lines = [header, rule]
    for name in settings:
        alone, alone_bound = epoch_time(results[name, "alone"])
        others = median(r.get("others") for c in conditions for r in results[name, c])
        row = f"| {name} | {f'{others:.0%}' if others is not None else '–'} |"
        row += f" {fmt(alone, alone_bound)} |"
        for c in conditions[1:]:
            beside, bound = epoch_time(results[name, c])
            ratio = "stalled" if beside is None and bound else "–"
            if alone and beside and not alone_bound:
                ratio = f"{'>' if bound else ''}{beside / alone:.1f}×"
            neighbour = median(r.get("neighbour") for r in results[name, c])
            share = None
            if neighbour and c == "matmul" and matmul:
                share = neighbour / matmul
            elif neighbour and c == "train" and alone and not alone_bound:
                share = alone / neighbour  # its epoch against this setting's epoch alone
            row += f" {fmt(beside, bound)} | {ratio} | {f'{share:.0%}' if share else '–'} |"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (first not timed)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--frames", type=int, default=300, help="train on frames :N (the 30-minute runs: 1250)"
    )
    parser.add_argument("--n-valid", type=int, default=50, help="of them for validation")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per run at most")
    parser.add_argument("--head-start", type=float, default=3, help="s the neighbour runs first")
    parser.add_argument("--spincounts", default="1000,10000", help="short GOMP_SPINCOUNTs")
    parser.add_argument("--conditions", default="alone,matmul,train", help="alone first")
    parser.add_argument("--settings", help="indices into the settings, e.g. 0,1")
    parser.add_argument("--quiet", type=float, default=0.25, help="wait for other jobs < this")
    parser.add_argument("--wait", type=float, default=10, help="seconds to wait for --quiet")
    parser.add_argument("--disturbed", type=float, default=0.1, help="other jobs' share above")
    parser.add_argument("--retries", type=int, default=0, help="of a disturbed run (0: none)")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()
    conditions = args.conditions.split(",")
    chosen = settings([int(n) for n in args.spincounts.split(",") if n])
    if args.settings:
        names = list(chosen)
        indices = [int(i) for i in args.settings.split(",")]
        if not all(0 <= i < len(names) for i in indices):
            parser.error(f"--settings: indices into {dict(enumerate(names))}")
        chosen = {names[i]: chosen[names[i]] for i in indices}

    print(f"{header()}; CPUs busy now: {cpu_busy():.0%}", flush=True)
    workload = train_command(Path("RUN"), args.epochs, None, (args.frames, args.n_valid))
    print(f"# workload: {' '.join(workload[1:])}")
    results = {(name, c): [] for name in chosen for c in conditions}
    rates = []
    with tempfile.TemporaryDirectory(prefix="contention-") as tmp:
        for repeat in range(args.repeats):  # interleaved: drifting load hits every setting
            if "matmul" in conditions:
                wait_for_quiet(args.quiet, args.wait)
                rates.append(matmul_alone())
            for name, setting in chosen.items():
                for condition in conditions:
                    r = measure(setting, condition, args, Path(tmp))
                    for _ in range(args.retries):  # disturbed by other jobs: once more
                        if r.get("others", 0) <= args.disturbed:
                            break
                        print(f"# disturbed ({r['others']:.0%} other jobs), again", flush=True)
                        r = min(r, measure(setting, condition, args, Path(tmp)), key=disturbance)
                    results[name, condition].append(r)
                    print(f"# [{repeat + 1}/{args.repeats}] {name:36s} {condition:6s} s/epoch "
                          f"{fmt(*epoch_time([r]))} ({r['epochs']} timed; other jobs' share "
                          f"of the CPUs before {r['busy']:.0%}, during "
                          f"{r.get('others', float('nan')):.0%})", flush=True)  # fmt: skip
    others = median(r.get("others") for runs in results.values() for r in runs) or 0
    print(f"\nShare of the CPUs used by other jobs during a run (median): {others:.0%}; matmul alone: "
          f"{fmt(median(rates))}/s; {args.epochs - 1} timed epochs per run, median of "
          f"{args.repeats} runs; '>': a lower bound, 'stalled': not even the first epoch, within {args.timeout:.0f} s\n")  # fmt: skip
    print(table(results, list(chosen), conditions, median(rates)))
    if args.json:
        rows = [
            {"setting": n, "condition": c, **r} for (n, c), runs in results.items() for r in runs
        ]
        args.json.write_text(json.dumps({"matmul_alone": rates, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
