"""MD steps per second through each package's ASE calculator: euclidnn vs nequip, allegro,
schnetpack and MACE, on the same model sizes.

Run with the benchmark environments (``make bench`` builds both; MACE runs in a worker
process, ``bench/md_mace.py``, started from ``.venv-mace``, since mace-torch 0.3.14 pins e3nn
0.4.4 and nequip 0.19 needs e3nn 0.6):

    .venv-bench/bin/python bench/md.py [--threads 1] [--repeats 5] [--json out.json]

Each row drives ASE's ``VelocityVerlet`` (NVE, 0.5 fs, float32) through one package's own ASE
calculator:

- ours: ``euclidnn.md.Calculator`` with its defaults (neighbour list kept with a 1 Å skin);
- nequip (NequIP) and nequip-allegro (Allegro): ``nequip.integrations.ase.NequIPCalculator``
  around the model built in-process, with the transforms ``NequIPCalculator`` builds for a
  saved model (``basic_transforms``: species mapper, matscipy neighbour list every step);
  the eager model, as ``compile_mode="eager"`` loads it (nequip recommends a model compiled
  with ``nequip-compile --mode aotinductor``, which needs a trained package file and minutes of
  C++ compilation: not measured here; its TorchScript mode is refused on torch ≥ 2.10);
- schnetpack (SchNet): ``schnetpack.interfaces.SpkCalculator`` with a
  ``MatScipyNeighborList`` (energy in eV);
- MACE: ``mace.calculators.MACECalculator`` loading a saved ``ScaleShiftMACE``.

Hyperparameters are those of ``bench/models.py`` (NequIP lmax 1, SchNet), our ``AllegroConfig``
defaults for Allegro (the peer set to match), and for MACE the size matched to our NequIP
(32x0e+32x1o hidden features, 2 interactions, correlation order 3; MACE's default is
128x0e+128x1o). The MACE row runs our NequIP against it.

Weights are random. Random energies pull atoms onto each other within a few hundred steps, so
every model's atomic energies are scaled by ``ENERGY_SCALE`` (a per-species energy scale on
every side; for schnetpack, its output layer): the atoms then move almost freely at their
300 K Maxwell–Boltzmann velocities. Free atoms of a dense liquid still meet (closer than 0.3 Å
after about 40 steps of 0.5 fs, and ethanol's after about 120), so a measurement is a short
segment (``STEPS``: 40 steps for the molecules, 20 and 10 for the water boxes) from the starting
structure: fresh atoms, velocities drawn with the repeat's seed (the same seed on both sides),
a fresh calculator, then ``steps`` timed steps. Our calculator therefore builds its neighbour
list once per segment, inside the timed region, i.e. every 10–40 steps (a trained model at
300 K rebuilds about every 40–80 steps, RESULTS "neighbour-list skin"); a peer builds it every
step, as it always does (schnetpack's ``SkinNeighborList`` with a 1 Å skin was measured no
faster than its plain list, 0.93–1.07×, and is not used). A segment must end with finite
positions and forces. Segments are interleaved (ours, peer, ours, …) after one warm-up segment
of each side; rows give median steps/s and ours / peer.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402
from lammps_md import water_box as liquid_water  # noqa: E402
from models import ALLEGRO, NEQUIP, R_MAX, SCHNET, TYPES, systems  # noqa: E402

warnings.filterwarnings("ignore")
HERE = Path(__file__).resolve().parent
ENERGY_SCALE = 0.01  # eV per unit of the random model's atomic energy
TEMPERATURE = 300.0  # K
TIMESTEP = 0.5  # fs
MACE = dict(hidden_irreps="32x0e+32x1o", num_interactions=2, correlation=3, max_ell=3)
# steps per timed segment: short enough that no two free atoms meet (see the docstring)
STEPS = {"ethanol": 40, "aspirin": 40, "water 64 pbc": 20, "water 1029 pbc": 10}


def md_systems() -> dict:
    """The four systems (``ase.Atoms``): ethanol, aspirin, 64 waters in a periodic 12.4 Å box,
    343 waters (1029 atoms) at 1 g/cm³ in a periodic 21.7 Å box."""
    small = systems()
    return {
        "ethanol": small["ethanol"][0],
        "aspirin": small["aspirin"][0],
        "water 64 pbc": small["water 64 pbc"][0],
        "water 1029 pbc": liquid_water(1000),
    }


def segment(atoms, make_calculator, seed: int, steps: int) -> dict:
    """Seconds for ``steps`` velocity-Verlet steps of fresh ``atoms`` (300 K velocities drawn
    with ``seed``) on a fresh calculator; raises if the run did not stay finite."""
    atoms = atoms.copy()
    MaxwellBoltzmannDistribution(atoms, temperature_K=TEMPERATURE, rng=np.random.default_rng(seed))
    atoms.calc = make_calculator()
    dynamics = VelocityVerlet(atoms, TIMESTEP * units.fs)
    start = time.perf_counter()
    dynamics.run(steps)
    seconds = time.perf_counter() - start
    forces = atoms.get_forces()
    if not (np.isfinite(atoms.positions).all() and np.isfinite(forces).all()):
        raise FloatingPointError(f"seed {seed}: positions or forces not finite")
    return {"seconds": seconds, "max_force": float(np.abs(forces).max())}


# ---- ours ---------------------------------------------------------------------------------------


def ours_models() -> dict:
    """Ours at bench/models.py's sizes (lmax 1), energies scaled by :data:`ENERGY_SCALE`."""
    torch.set_default_dtype(torch.float32)
    return {
        "schnet": models.ours_schnet(energy_scales=ENERGY_SCALE),
        "nequip": models.ours_nequip(1, energy_scales=ENERGY_SCALE),
        "allegro": models.ours_allegro(energy_scales=ENERGY_SCALE),
    }


def ours_calculator(model):
    from euclidnn.md import Calculator

    return lambda: Calculator(model)


# ---- peers in this process ----------------------------------------------------------------------


def nequip_calculator(model):
    from nequip.integrations.ase import NequIPCalculator
    from nequip.integrations.utils import basic_transforms

    model.eval()
    identity = {name: name for name in TYPES}
    return lambda: NequIPCalculator(
        model, device="cpu", transforms=basic_transforms(model.metadata, R_MAX, TYPES, identity)
    )


def peer_nequip():
    """nequip's NequIP at bench/models.py's sizes (lmax 1) through its calculator."""
    model = models.peer_nequip(1, do_derivatives=True, per_type_energy_scales=ENERGY_SCALE)
    return nequip_calculator(model)


def peer_allegro():
    """nequip-allegro's Allegro at bench/models.py's sizes through nequip's calculator."""
    model = models.peer_allegro(do_derivatives=True, per_type_energy_scales=ENERGY_SCALE)
    return nequip_calculator(model)


def peer_schnetpack():
    import schnetpack.transform as trn
    from models import peer_schnet
    from schnetpack.interfaces import SpkCalculator

    model = peer_schnet()
    with torch.no_grad():  # the energy scale: schnetpack's Atomwise has none of its own
        output_layer = model.output_modules[0].outnet[-1]
        output_layer.weight.mul_(ENERGY_SCALE)
        output_layer.bias.mul_(ENERGY_SCALE)
    return lambda: SpkCalculator(
        model,
        neighbor_list=trn.MatScipyNeighborList(cutoff=R_MAX),
        energy_unit="eV",
        position_unit="Ang",
        dtype=torch.float32,
    )


# ---- the comparison -----------------------------------------------------------------------------


def compare(ours, peer, steps: int, repeats: int) -> tuple[float, float, float]:
    """Median steps/s of ``ours(seed, steps)`` and ``peer(seed, steps)``, interleaved, after one
    warm-up segment each; and the median largest force component (eV/Å) at the end."""
    ours(0, 3), peer(0, 3)
    rates_ours, rates_peer, forces = [], [], []
    for seed in range(1, repeats + 1):
        for run, rates in ((ours, rates_ours), (peer, rates_peer)):
            result = run(seed, steps)
            rates.append(steps / result["seconds"])
            forces.append(result["max_force"])
    return statistics.median(rates_ours), statistics.median(rates_peer), statistics.median(forces)


def profile(model, atoms, steps: int, repeats: int = 5) -> None:
    """Where a step of ours goes: steps/s; ``predict`` alone on the starting graph (its share of
    a step; the rest is the calculator's input, ASE's integrator and calculator protocol); the
    operators that cost most over one segment (``torch.profiler``, self CPU time)."""
    from torch.profiler import profile as torch_profile

    from euclidnn.data import Graph
    from euclidnn.models import predict

    make = ours_calculator(model)
    segment(atoms, make, 0, 3)
    rate = statistics.median(
        steps / segment(atoms, make, s, steps)["seconds"] for s in range(repeats)
    )
    graph = Graph.from_ase(atoms, r_max=R_MAX, dtype=torch.float32)
    times = []
    for _ in range(max(repeats, 10)):
        start = time.perf_counter()
        predict(model, graph)
        times.append(time.perf_counter() - start)
    model_seconds = statistics.median(times)
    print(f"{_rate(rate)} steps/s; predict alone {model_seconds * 1e3:.3g} ms = "
          f"{model_seconds * rate:.0%} of a step, the rest outside the model")  # fmt: skip
    with torch_profile() as prof:
        segment(atoms, make, 1, steps)
    events = prof.key_averages()
    calls = sum(e.count for e in events if e.key.startswith("aten::"))
    print(f"{calls / steps:.0f} aten operator calls a step (nested calls counted)")
    print(events.table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=50))


def _rate(steps_per_second: float) -> str:
    return f"{steps_per_second:,.0f}" if steps_per_second >= 100 else f"{steps_per_second:.3g}"


def cpu() -> str:
    model, flags = platform.processor(), set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{model} ({os.cpu_count()} logical CPUs; {' '.join(isa)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads, every side")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--steps", type=float, default=1.0, help="multiply the steps per segment by this"
    )
    parser.add_argument("--systems", default=",".join(STEPS), help="comma-separated")
    parser.add_argument("--models", default="schnet,nequip,allegro,mace", help="comma-separated")
    parser.add_argument(
        "--mace-python",
        default=str(HERE.parent / ".venv-mace/bin/python"),
        help="the Python of MACE's venv (default: .venv-mace of this checkout)",
    )
    parser.add_argument(
        "--mace-hidden",
        default=MACE["hidden_irreps"],
        help="MACE's hidden irreps (its default size: 128x0e+128x1o)",
    )
    parser.add_argument(
        "--profile", help="MODEL:SYSTEM (e.g. nequip:ethanol): where a step of ours goes"
    )
    parser.add_argument("--json", default=None, help="write the rows as JSON to this path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.profile:
        name, system = args.profile.split(":", 1)
        steps = max(2, round(STEPS[system] * args.steps))
        profile(ours_models()[name], md_systems()[system], steps)
        return

    import allegro
    import ase
    import e3nn
    import nequip
    import schnetpack

    import euclidnn

    names = args.models.split(",")
    mace = None
    if "mace" in names:
        from md_mace import Worker

        mace = Worker(Path(args.mace_python), args.threads, args.mace_hidden)
    print(f"# {cpu()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M %Z')}; python {platform.python_version()}, torch "
        f"{torch.__version__}, euclidnn {euclidnn.__version__}, e3nn {e3nn.__version__}, nequip "
        f"{nequip.__version__}, allegro {allegro.__version__}, schnetpack {schnetpack.__version__}, "
        f"ase {ase.__version__}"
        + (f", mace {mace.versions['mace']} (e3nn {mace.versions['e3nn']})" if mace else "")
    )
    print(
        f"# threads {args.threads} (every side), float32, r_max {R_MAX} Å, NVE {TIMESTEP} fs "
        f"from {TEMPERATURE:.0f} K, energy scale {ENERGY_SCALE}, {args.repeats} interleaved "
        "segments, medians"
    )
    print(f"# NequIP: lmax 1, {NEQUIP}\n# SchNet: {SCHNET}\n# Allegro: {ALLEGRO}")
    print(f"# MACE (vs our NequIP): {dict(MACE, hidden_irreps=args.mace_hidden)}")
    models = ours_models()
    peers = {
        "schnet": ("schnet", "schnetpack", peer_schnetpack),
        "nequip": ("nequip", "nequip", peer_nequip),
        "allegro": ("allegro", "allegro", peer_allegro),
        "mace": ("nequip", "mace", None),
    }
    data = md_systems()
    systems_wanted = args.systems.split(",")
    rows = []
    print(
        "\n| system | atoms | ours | steps/s | peer | steps/s | ours / peer | steps × repeats |"
        "\n|---|---:|---|---:|---|---:|---:|---:|"
    )
    for name in names:
        ours_name, peer_name, make_peer = peers[name]
        make_ours = ours_calculator(models[ours_name])
        peer_calculator = make_peer() if make_peer else None
        torch.set_default_dtype(torch.float32)
        for system in systems_wanted:
            atoms, steps = data[system], max(2, round(STEPS[system] * args.steps))

            ours = functools.partial(segment, atoms, make_ours)
            if peer_calculator is None:
                peer = functools.partial(mace.segment, system)
            else:
                peer = functools.partial(segment, atoms, peer_calculator)
            try:
                rate_ours, rate_peer, max_force = compare(ours, peer, steps, args.repeats)
            except Exception as err:
                print(
                    f"| {system} | {len(atoms)} | {ours_name} | | {peer_name} | | failed: {err} |"
                )
                continue
            row = {
                "system": system,
                "atoms": len(atoms),
                "ours": ours_name,
                "ours_steps_per_s": round(rate_ours, 2),
                "peer": peer_name,
                "peer_steps_per_s": round(rate_peer, 2),
                "ratio": round(rate_ours / rate_peer, 2),
                "steps": steps,
                "repeats": args.repeats,
                "max_force": round(max_force, 3),
            }
            rows.append(row)
            print(
                f"| {system} | {len(atoms)} | {ours_name} | {_rate(rate_ours)} | {peer_name} | "
                f"{_rate(rate_peer)} | **{rate_ours / rate_peer:.2f}×** | {steps} × {args.repeats} |",
                flush=True,
            )
    if mace:
        mace.close()
    print(f"# load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
