"""NequIP energy + forces: ours against nequip eager and nequip's compiled model
(``nequip-compile --mode aotinductor``, the package's fastest way to run a model).

``nequip-compile`` takes a checkpoint of ``nequip-train``, so this benchmark needs one; any
will do (the time does not depend on the weights), e.g. the one ``bench/train_accuracy.py``
leaves for the peer at our model size:

    .venv-bench/bin/python bench/train_accuracy.py --quick --minutes 0.3 \\
        --models nequip-pkg-matched --work runs/nequip-ckpt
    .venv-bench/bin/python bench/nequip_compiled.py runs/nequip-ckpt/nequip-pkg-matched/last.ckpt

The script compiles the checkpoint (CPU, float32; a few minutes of C++ compilation the first
time, kept next to the checkpoint) unless ``--compiled FILE`` names one, builds our NequIP at
the checkpoint's hyperparameters with random weights, and times the three in one process,
interleaved, one thread or ``--threads``, on ethanol and aspirin (``bench/models.py``'s
geometries). The compiled model is built for ``--target pair_nequip`` (LAMMPS's: positions,
edges, types, cell and shifts in; per-atom energies, forces and virial out; one frame): the
``ase`` target also asks for the stress, whose compile-time check fails on a molecule
without a cell (NaN).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import yaml
from machine import header
from models import systems

warnings.filterwarnings("ignore")
INPUTS = ["pos", "edge_index", "atom_types", "cell", "edge_cell_shift"]
OUTPUTS = ["atomic_energy", "forces", "virial"]


def hyperparameters(checkpoint: Path) -> dict:
    """The model block of the training run's ``config.yaml`` beside the checkpoint."""
    config = yaml.safe_load((checkpoint.parent / "config.yaml").read_text())
    return config["training_module"]["model"]


def compile_checkpoint(checkpoint: Path, out: Path) -> None:
    command = [
        str(Path(sys.executable).parent / "nequip-compile"), str(checkpoint), str(out),
        "--mode", "aotinductor", "--device", "cpu", "--target", "pair_nequip",
    ]  # fmt: skip
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def ours(model: dict, atoms):
    from euclidnn.data import Graph
    from euclidnn.models import NequIP, NequIPConfig, predict

    species = tuple(int(z) for z in sorted(set(atoms.numbers)))
    net = NequIP(
        NequIPConfig(
            species=species,
            r_max=model["r_max"],
            lmax=model["l_max"],
            num_features=model["num_features"],
            num_layers=model["num_layers"],
            num_basis=model["num_bessels"],
            parity=model["parity"],
            radial_mlp_depth=model["radial_mlp_depth"],
            radial_mlp_width=model["radial_mlp_width"],
            avg_num_neighbors=12.0,
        )
    )
    graph = Graph.from_ase(atoms, model["r_max"], torch.float32)

    def run():
        p = predict(net, graph)
        return p.energy, p.forces

    return run


def peer_input(model: dict, atoms) -> dict:
    from nequip.data import AtomicDataDict, compute_neighborlist_, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper

    mapper = ChemicalSpeciesToAtomTypeMapper(model_type_names=list(model["type_names"]))
    data = compute_neighborlist_(mapper(from_ase(atoms)), model["r_max"])
    # float64 in, as nequip's data are (its model casts to float32 inside); a compiled model
    # does not check dtypes and reads float32 inputs as garbage
    data = AtomicDataDict.batched_from_list([data])
    return {k: (v.double() if v.is_floating_point() else v) for k, v in data.items()}


def peer_eager(checkpoint: Path, data: dict):
    from nequip.model import ModelFromCheckpoint
    from nequip.utils.global_state import set_global_state

    set_global_state()
    net = ModelFromCheckpoint(str(checkpoint))["sole_model"].eval()
    torch.set_default_dtype(torch.float32)

    def run():
        out = net(dict(data))
        return out["total_energy"], out["forces"]

    return run


def peer_compiled(compiled: Path, data: dict):
    from nequip.model.inference_models.compiled import load_compiled_model

    net, _ = load_compiled_model(str(compiled), "cpu", INPUTS, OUTPUTS)

    def run():
        out = net({k: data[k] for k in INPUTS})
        return out["atomic_energy"].sum(), out["forces"]

    return run


def _time(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median ms per call of each, interleaved, each timing ≥ 30 ms of calls, after warm-up."""
    counts = {}
    for name, fn in fns.items():
        _time(fn, 3)
        counts[name] = max(1, int(30.0 / max(_time(fn, 3), 1e-3)))
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_time(fn, counts[name]))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a nequip-train checkpoint (.ckpt)")
    parser.add_argument("--compiled", type=Path, help="its .nequip.pt2 (default: compile it)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    compiled = args.compiled or args.checkpoint.with_suffix(".nequip.pt2")
    if not compiled.exists():
        compile_checkpoint(args.checkpoint, compiled)
    model = hyperparameters(args.checkpoint)
    print(header(), flush=True)
    size = ("r_max", "num_layers", "l_max", "num_features", "num_bessels", "parity")
    print("model:", {k: model[k] for k in size}, f"threads {torch.get_num_threads()}, float32")
    data = systems()
    print(f"\n{'system':10s} {'ours ms':>8s} {'eager ms':>9s} {'AOTI ms':>8s} "
          f"{'eager/ours':>11s} {'AOTI/ours':>10s}")  # fmt: skip
    for name in ("ethanol", "aspirin"):
        (atoms,) = data[name]
        inputs = peer_input(model, atoms)
        fns = {
            "ours": ours(model, atoms),
            "eager": peer_eager(args.checkpoint, inputs),
            "aoti": peer_compiled(compiled, inputs),
        }
        energies = {k: float(fn()[0].sum()) for k, fn in fns.items()}
        assert abs(energies["eager"] - energies["aoti"]) < 1e-4 * abs(energies["eager"]), energies
        t = interleaved(fns, args.repeats)
        print(
            f"{name:10s} {t['ours']:8.2f} {t['eager']:9.2f} {t['aoti']:8.2f} "
            f"{t['eager'] / t['ours']:10.2f}× {t['aoti'] / t['ours']:9.2f}×",
            flush=True,
        )


if __name__ == "__main__":
    main()
