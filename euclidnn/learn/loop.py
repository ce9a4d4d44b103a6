"""``learn``: the active-learning loop, as named steps over a state kept on disk.

    _seed → repeat: _train → _explore → _label    (until converged or a budget is spent)

1. **seed**: labelled starting data — rattled copies of the structures (Gaussian
   displacements), or a short xTB Langevin MD of each (:func:`euclidnn.data.label.sample`).
2. **train**: a committee of K models (:func:`~euclidnn.learn.committee.train_committee`) on
   every label so far, member k warm-started from member k of the previous iteration.
3. **explore**: committee-mean NVT MD from each structure at each temperature
   (:func:`~euclidnn.learn.explore.explore`), ``first_explore_steps`` in the first iteration,
   twice as many in each next one, up to ``explore_steps``; frames with
   sigma_low < σ_F ≤ sigma_high are selected, thinned in time
   (:func:`~euclidnn.learn.select.select_frames`).
4. **label**: the selection, by the reference, in a process pool
   (:func:`~euclidnn.learn.labelling.label_frames`); frames already labelled are skipped.

The loop stops after a training when ``max_labels`` labels are reached, ``minutes`` are spent
or ``max_iterations`` committees were trained; and after an exploration of the full
``explore_steps`` that found no frame above sigma_low (*converged*).

Everything is in ``out`` after every step (the layout is in :func:`learn`'s docstring);
``state.json`` names the last step done, so a killed run, started again with the same ``out``,
goes on from there: a committee member whose training finished is kept, one that was killed is
resumed from its checkpoint, and a frame whose key is in ``labels.xyz`` is never labelled again.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from torch import nn

from euclidnn.data.structure import Structure
from euclidnn.files import write_text
from euclidnn.learn.committee import load_committee, train_committee
from euclidnn.learn.explore import ExploreSettings, explore
from euclidnn.learn.labelling import check_reference, label_frames, read_labelled
from euclidnn.learn.report import write_log, write_report
from euclidnn.learn.select import candidates, select_frames
from euclidnn.train import TrainConfig

__all__ = ["LearnConfig", "LearnResult", "learn", "SIGMA_LOW", "SIGMA_HIGH"]

#: eV/Å: below it the committee agrees — about the force error a small model reaches on the
#: configurations it was trained on (tens of meV/Å for a small molecule).
SIGMA_LOW = 0.05
#: eV/Å: above it the committee's spread is a large part of the thermal forces themselves
#: (~1 eV/Å at 300–500 K): the MD has left the region one more label could repair.
SIGMA_HIGH = 0.5

STEPS = ("seeded", "trained", "explored", "labelled", "done")


@dataclass(frozen=True)
class LearnConfig:
    """Settings of an active-learning run (σ in eV/Å, temperatures in K, time steps in fs).

    Attributes:
        temperatures: of the exploration MD (one trajectory per structure and temperature).
        committee: K, the number of models.
        sigma_low, sigma_high: the selection bounds on σ_F (:data:`SIGMA_LOW`,
            :data:`SIGMA_HIGH`).
        max_labels: stop once this many frames are labelled (seed frames included).
        minutes: stop once this much wall time is spent (over all resumes); None: no limit.
        max_iterations: stop after this many committees.
        seed_frames: labelled frames to start from (over all structures).
        seed_from: ``"rattle"`` (Gaussian displacements of ``rattle`` Å) or ``"md"`` (xTB
            Langevin MD at the highest temperature, every 10th of 0.5 fs steps).
        rattle: Å, standard deviation of the seed displacements.
        first_explore_steps: MD steps per trajectory in the first exploration; doubled each
            iteration up to ``explore_steps``.
        explore_steps: the requested exploration length per trajectory.
        timestep: fs.
        record_interval: MD steps between frames that can be selected.
        max_selected: frames labelled per iteration, at most.
        min_spacing: MD steps between two selected frames of one trajectory.
        workers: labelling processes.
        seed: of the rattling, the MD and the committee (member k: seed + k).
    """

    temperatures: tuple[float, ...]
    committee: int = 4
    sigma_low: float = SIGMA_LOW
    sigma_high: float = SIGMA_HIGH
    max_labels: int = 200
    minutes: float | None = None
    max_iterations: int = 20
    seed_frames: int = 20
    seed_from: str = "rattle"
    rattle: float = 0.05
    first_explore_steps: int = 250
    explore_steps: int = 2000
    timestep: float = 0.5
    record_interval: int = 5
    max_selected: int = 20
    min_spacing: int = 20
    workers: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.temperatures or not all(t > 0 for t in self.temperatures):
            raise ValueError(f"temperatures: positive K needed, got {list(self.temperatures)}")
        if self.committee < 2:
            raise ValueError(f"committee: at least 2 models, got {self.committee}")
        if not 0 <= self.sigma_low < self.sigma_high:
            raise ValueError(
                f"sigma_low ({self.sigma_low}) must be ≥ 0 and below sigma_high "
                f"({self.sigma_high}) eV/Å"
            )
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes: must be > 0, got {self.minutes}")
        for name in ("max_labels", "max_iterations", "seed_frames", "explore_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be ≥ 1, got {getattr(self, name)}")
        if self.seed_frames > self.max_labels:
            raise ValueError(
                f"seed_frames ({self.seed_frames}) exceeds max_labels ({self.max_labels})"
            )
        if self.seed_from not in ("rattle", "md"):
            raise ValueError(f"seed_from: 'rattle' or 'md', got {self.seed_from!r}")

    def explore_length(self, iteration: int) -> int:
        """MD steps per trajectory in ``iteration`` (0 is the first).

        >>> LearnConfig((300.0,), first_explore_steps=250, explore_steps=800).explore_length(2)
        800
        """
        return min(self.first_explore_steps * 2**iteration, self.explore_steps)


@dataclass
class LearnResult:
    """What a run did: ``stop_reason`` (``converged``, ``max_labels``, ``minutes``,
    ``max_iterations``), the labelled frames, the last committee's model files, and one row
    per iteration (what ``log.csv`` holds)."""

    stop_reason: str
    labels: int
    committee: list[Path]
    rows: list[dict] = field(default_factory=list)


@dataclass
class _State:
    """What ``state.json`` holds: the iteration and the last step done in it, and the wall
    time spent before this process started."""

    iteration: int = 0
    step: str = ""
    seconds: float = 0.0
    stop_reason: str = ""

    @classmethod
    def read(cls, out: Path) -> _State:
        path = out / "state.json"
        if not path.is_file():
            return cls()
        try:
            values = json.loads(path.read_text())["state"]
            return cls(**values)
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a state written by euclidnn learn ({err!r})") from None

    def write(self, out: Path, config: LearnConfig) -> None:
        values = {"state": asdict(self), "config": asdict(config)}
        write_text(out / "state.json", json.dumps(values, indent=1) + "\n")


def _iteration_folder(out: Path, iteration: int) -> Path:
    return out / f"iteration-{iteration:03d}"


@dataclass
class _Run:
    """One run while it goes: its inputs, its folder and its state."""

    structures: list[Atoms]
    names: list[str]
    reference: object
    config: LearnConfig
    train_config: TrainConfig
    make_model: Callable[[Sequence[Structure], int], nn.Module]
    out: Path
    log: Callable[[str], None]
    state: _State
    started: float = field(default_factory=time.monotonic)
    before: float = 0.0  # seconds spent by earlier processes

    @property
    def labels_path(self) -> Path:
        return self.out / "labels.xyz"

    def elapsed(self) -> float:
        return self.before + time.monotonic() - self.started

    def done(self, step: str, iteration: int | None = None, stop_reason: str = "") -> None:
        """Record that ``step`` is done (``state.json``, written whole)."""
        if iteration is not None:
            self.state.iteration = iteration
        self.state.step, self.state.stop_reason = step, stop_reason or self.state.stop_reason
        self.state.seconds = self.elapsed()
        self.state.write(self.out, self.config)

    def committee_folder(self, iteration: int) -> Path:
        return _iteration_folder(self.out, iteration) / "committee"


def learn(
    structures: Sequence[Atoms],
    reference,
    config: LearnConfig,
    train_config: TrainConfig,
    make_model: Callable[[Sequence[Structure], int], nn.Module],
    out: str | os.PathLike,
    *,
    names: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> LearnResult:
    """Run (or resume) active learning from ``structures`` with the ``reference`` method.

    Args:
        structures: starting structures (ase.Atoms; molecules or periodic cells).
        reference: a :class:`~euclidnn.data.label.Level` or an ASE calculator factory
            (:mod:`euclidnn.learn.labelling`).
        config: the loop's settings.
        train_config: the settings of every committee member's fit (model, budget, seed).
        make_model: ``make_model(training_set, seed)``, a new model for a training set with
            weights drawn from ``seed`` (the CLI's ``new_model`` with the set's statistics).
        out: the run folder; a folder with a ``state.json`` is resumed.
        names: how errors name the structures.
        log: where the progress lines go.

    The folder holds ``state.json`` (the last step done), ``labels.xyz`` (every labelled frame,
    extxyz, eV/Å; ``info``: ``learn_key``, ``learn_iteration``, ``learn_source``), ``log.csv``
    (one row per iteration), and per iteration ``iteration-NNN/``: ``committee/member-k/`` (fit
    run folders: ``model.safetensors``, ``last.ckpt``, ``log.csv``, ``trained.json``),
    ``exploration.json`` (per trajectory: temperature, steps, stability, restarts, σ_F of every
    step), ``selection.xyz`` (the frames chosen for labelling, with their σ_F) and
    ``summary.json`` (the row of ``log.csv``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(names or [f"structure {k}" for k in range(len(structures))])
    state = _State.read(out)
    run = _Run(
        list(structures), names, reference, config, train_config, make_model, out, log, state
    )
    run.before = state.seconds
    if state.step == "":
        check_reference(reference, run.structures, names)
        _seed(run)
    if state.step == "done" and _budget_left(run):  # resumed with a larger budget
        run.state.step, run.state.stop_reason = "trained", ""
    steps = {"seeded": _train, "labelled": _train, "trained": _explore, "explored": _label}
    while run.state.step != "done":
        steps[run.state.step](run)
    rows = write_log(out)
    write_report(out)
    committee = sorted(
        run.committee_folder(_last_committee(run)).glob("member-*/model.safetensors")
    )
    return LearnResult(run.state.stop_reason, len(read_labelled(run.labels_path)), committee, rows)


def _budget_left(run: _Run) -> bool:
    """Whether the budget that stopped the run (``state.stop_reason``) allows more now: a run
    resumed with a larger --max-labels, --minutes or --max-iterations goes on exploring."""
    reason, config = run.state.stop_reason, run.config
    if reason == "max_labels":
        return len(read_labelled(run.labels_path)) < config.max_labels
    if reason == "minutes":
        return config.minutes is None or run.elapsed() < 60 * config.minutes
    if reason == "max_iterations":
        return run.state.iteration + 1 < config.max_iterations
    return False


def _last_committee(run: _Run) -> int:
    i = run.state.iteration
    return i if (run.committee_folder(i) / "member-0" / "trained.json").is_file() else i - 1


def _seed(run: _Run) -> None:
    """Step 1: the starting frames, labelled (``seed/`` keeps an MD's sampled frames)."""
    config, frames = run.config, []
    counts = np.diff(np.linspace(0, config.seed_frames, len(run.structures) + 1).round())
    rng = np.random.default_rng(config.seed)
    for k, (atoms, count) in enumerate(zip(run.structures, counts.astype(int))):
        if config.seed_from == "md":
            frames += _seed_md(run, k, atoms, count)
            continue
        for copy in range(count):
            frame = Atoms(numbers=atoms.numbers, cell=atoms.cell, pbc=atoms.pbc)
            shift = rng.normal(0.0, config.rattle, atoms.positions.shape) if copy else 0.0
            frame.positions = np.round(atoms.positions + shift, 6)
            frame.info["learn_structure"] = run.names[k]
            frames.append(frame)
    new, _ = label_frames(
        frames,
        run.reference,
        run.labels_path,
        workers=config.workers,
        info={"learn_iteration": 0, "learn_source": "seed"},
    )
    run.log(f"seed: {new} frames ({config.seed_from}) labelled → {run.labels_path}")
    run.done("seeded", iteration=0)


def _seed_md(run: _Run, k: int, atoms: Atoms, count: int) -> list[Atoms]:
    """``count`` frames of a short xTB Langevin MD of structure ``k`` (reused when resumed)."""
    from euclidnn.data.label import Sampling, sample

    path = run.out / "seed" / f"sampled-{k}.xyz"
    if path.is_file():
        sampled = ase.io.read(path, index=":")
    else:
        sampling = Sampling(
            num_frames=int(count),
            temperature=max(run.config.temperatures),
            equilibration=200,
            seed=run.config.seed + k,
        )
        sampled = sample(atoms, sampling, path)
    frames = []
    for f in sampled:
        frame = Atoms(numbers=f.numbers, positions=np.round(f.positions, 6), cell=f.cell, pbc=f.pbc)
        frame.info["learn_structure"] = run.names[k]
        frames.append(frame)
    return frames


def _train(run: _Run) -> None:
    """Step 2: the committee of this iteration on every label so far; then the budgets."""
    i, config = run.state.iteration, run.config
    frames = read_labelled(run.labels_path)
    structures = [Structure.from_ase(f) for f in frames]
    run.log(f"iteration {i}: training {config.committee} models on {len(frames)} labels")
    previous = run.committee_folder(i - 1) if i > 0 else None
    train_committee(
        structures,
        run.train_config,
        run.make_model,
        run.committee_folder(i),
        config.committee,
        previous=previous,
        log=run.log,
    )
    stop = ""
    if len(frames) >= config.max_labels:
        stop = "max_labels"
    elif config.minutes is not None and run.elapsed() >= 60 * config.minutes:
        stop = "minutes"
    elif i + 1 >= config.max_iterations:
        stop = "max_iterations"
    if stop:
        _write_summary(run, i, {"labels": len(frames), "stop": stop})
    run.done("done" if stop else "trained", stop_reason=stop)
    if stop:
        run.log(f"stopped: {stop} ({len(frames)} labels, {run.elapsed() / 60:.1f} min)")


def _trajectories(run: _Run, models: list[nn.Module], steps: int) -> list[tuple]:
    """(structure index, temperature, Trajectory) for every structure at every temperature."""
    config, i, found = run.config, run.state.iteration, []
    for k, atoms in enumerate(run.structures):
        for t, temperature in enumerate(config.temperatures):
            settings = ExploreSettings(
                temperature=temperature,
                steps=steps,
                sigma_low=config.sigma_low,
                sigma_high=config.sigma_high,
                timestep=config.timestep,
                record_interval=config.record_interval,
                seed=config.seed + 1_000_003 * i + 1009 * k + t,
            )
            trajectory = explore(atoms, models, settings)
            for frame in trajectory.frames:
                frame.info["learn_structure"] = run.names[k]
            found.append((k, temperature, trajectory))
    return found


def _explore(run: _Run) -> None:
    """Step 3: committee-mean MD, the selection (``selection.xyz``) and what it saw
    (``exploration.json``); converged when a full-length exploration found nothing new."""
    i, config = run.state.iteration, run.config
    models = load_committee([run.committee_folder(i)])
    steps = config.explore_length(i)
    found = _trajectories(run, models, steps)
    frames, groups = [], []
    for index, (_, _, trajectory) in enumerate(found):
        frames += trajectory.frames
        groups += [index] * len(trajectory.frames)
    labels = len(read_labelled(run.labels_path))
    chosen = select_frames(
        [f.info["sigma_forces"] for f in frames],
        [f.info["md_step"] for f in frames],
        config.sigma_low,
        config.sigma_high,
        max_frames=min(config.max_selected, config.max_labels - labels),
        min_spacing=config.min_spacing,
        trajectories=groups,
    )
    folder = _iteration_folder(run.out, i)
    _write_exploration(folder / "exploration.json", run, found)
    text = io.StringIO()
    ase.io.write(text, [frames[c] for c in chosen], format="extxyz")
    write_text(folder / "selection.xyz", text.getvalue())
    every_sigma = np.concatenate([t.sigmas for _, _, t in found] or [[]])
    converged = (
        steps == config.explore_steps
        and not np.any(every_sigma > config.sigma_low)
        and all(t.restarts == 0 and t.steps_done == steps for _, _, t in found)
    )
    summary = _exploration_summary(run, found, steps, labels, frames, chosen)
    _write_summary(run, i, summary | ({"stop": "converged"} if converged else {}))
    run.log(_progress_line(i, summary, run.elapsed()))
    run.done("done" if converged else "explored", stop_reason="converged" if converged else "")


def _exploration_summary(run, found, steps, labels, frames, chosen) -> dict:
    config = run.config
    sigmas = np.concatenate([t.sigmas for _, _, t in found] or [[]])
    stable = [t.stable_fs for _, _, t in found]
    sigma_frames = [f.info["sigma_forces"] for f in frames]
    return {
        "labels": labels,
        "explore_steps": steps,
        "trajectories": len(found),
        "temperatures_K": list(config.temperatures),
        "candidates": int(len(candidates(sigma_frames, config.sigma_low, config.sigma_high))),
        "selected": len(chosen),
        "sigma_median": float(np.median(sigmas)) if len(sigmas) else math.nan,
        "sigma_p95": float(np.quantile(sigmas, 0.95)) if len(sigmas) else math.nan,
        "sigma_max": float(sigmas.max()) if len(sigmas) else math.nan,
        "stable_fs_min": float(min(stable)),
        "stable_fs_mean": float(np.mean(stable)),
        "restarts": int(sum(t.restarts for _, _, t in found)),
        "minutes": run.elapsed() / 60,
    }


def _progress_line(i: int, s: dict, seconds: float) -> str:
    return (
        f"iteration {i}: {s['labels']} labels; explored {s['trajectories']}×{s['explore_steps']} "
        f"steps: σ_F median {s['sigma_median']:.3f}, max {s['sigma_max']:.3f} eV/Å, stable "
        f"≥ {s['stable_fs_min']:.0f} fs, {s['restarts']} restarts; {s['candidates']} candidates "
        f"→ {s['selected']} selected; {seconds / 60:.1f} min"
    )


def _write_exploration(path: Path, run: _Run, found: list[tuple]) -> None:
    rows = [
        {
            "structure": run.names[k],
            "temperature_K": temperature,
            "steps_done": t.steps_done,
            "stable_fs": t.stable_fs,
            "restarts": t.restarts,
            "timestep_fs": t.timestep,
            "sigmas": [round(float(s), 5) for s in t.sigmas],
        }
        for k, temperature, t in found
    ]
    write_text(path, json.dumps({"trajectories": rows}) + "\n")


def _write_summary(run: _Run, iteration: int, values: dict) -> None:
    path = _iteration_folder(run.out, iteration) / "summary.json"
    write_text(path, json.dumps({"iteration": iteration, **values}, indent=1) + "\n")
    write_log(run.out)  # log.csv, rebuilt from every summary.json


def _label(run: _Run) -> None:
    """Step 4: label the selection of this iteration (skipping frames already labelled)."""
    i = run.state.iteration
    path = _iteration_folder(run.out, i) / "selection.xyz"
    selection = ase.io.read(path, index=":") if path.stat().st_size else []
    new, skipped = label_frames(
        selection,
        run.reference,
        run.labels_path,
        workers=run.config.workers,
        info={"learn_iteration": i + 1, "learn_source": "explore"},
    )
    again = f" ({skipped} already labelled)" if skipped else ""
    run.log(f"iteration {i}: labelled {new} frames{again}")
    run.done("labelled", iteration=i + 1)
