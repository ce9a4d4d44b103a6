"""MACE for ``bench/md.py``: a worker process started from MACE's own venv (``.venv-mace``:
mace-torch 0.3.14 pins e3nn 0.4.4, nequip 0.19 needs e3nn 0.6), answering the main process
segment by segment so that its segments interleave with ours.

    .venv-mace/bin/python bench/md_mace.py --threads 1 [--mace-hidden 32x0e+32x1o]

reads one JSON request a line on stdin (``{"system", "seed", "steps"}``) and answers each with
``@`` and the JSON of :func:`md.segment`'s result (or ``{"error": …}``). ``bench/models.py``
uses the same worker for its MACE rows: a request ``{"time", "kind", "calls"}`` (a system of
:func:`models.systems`, ``"step"`` = energy + forces or ``"train"`` = a training step, how many
calls) is answered with ``{"ms"}``, the mean time of one call measured here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from md import ENERGY_SCALE, MACE, md_systems, segment
from models import NEQUIP, R_MAX, SPECIES


def mace_model(hidden_irreps: str):
    """A random-weight float32 ``ScaleShiftMACE`` at :data:`md.MACE` with ``hidden_irreps``."""
    from e3nn import o3
    from mace import modules

    torch.set_default_dtype(torch.float32)
    interaction = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return modules.ScaleShiftMACE(
        r_max=R_MAX,
        num_bessel=NEQUIP["num_bessels"],
        num_polynomial_cutoff=6,
        max_ell=MACE["max_ell"],
        interaction_cls=interaction,
        interaction_cls_first=interaction,
        num_interactions=MACE["num_interactions"],
        num_elements=len(SPECIES),
        hidden_irreps=o3.Irreps(hidden_irreps),
        MLP_irreps=o3.Irreps("16x0e"),
        gate=torch.nn.functional.silu,
        atomic_energies=np.zeros(len(SPECIES)),
        avg_num_neighbors=NEQUIP["avg_num_neighbors"],
        atomic_numbers=list(SPECIES),
        correlation=MACE["correlation"],
        radial_type="bessel",
        atomic_inter_scale=ENERGY_SCALE,
        atomic_inter_shift=0.0,
    )


def mace_calculator(directory: Path, hidden_irreps: str):
    """A ``MACECalculator`` of :func:`mace_model` saved in ``directory``."""
    from mace.calculators import MACECalculator

    model = mace_model(hidden_irreps)
    path = directory / "mace.model"
    torch.save(model, path)
    calculator = MACECalculator(model_paths=str(path), device="cpu", default_dtype="float32")

    def fresh():
        calculator.reset()
        return calculator

    return fresh


def mace_call(model, atoms_list, kind: str):
    """One call of ``model`` on the batch of ``atoms_list``: ``"step"`` = energy + forces,
    ``"train"`` = energy + force loss (forces with their graph), backward, Adam step; as
    :func:`models.ours_step` and :func:`models.ours_train`."""
    from mace import data, tools
    from mace.tools import torch_geometric

    table = tools.AtomicNumberTable(list(SPECIES))
    graphs = [
        data.AtomicData.from_config(data.config_from_atoms(a), z_table=table, cutoff=R_MAX)
        for a in atoms_list
    ]
    loader = torch_geometric.dataloader.DataLoader(graphs, batch_size=len(graphs))
    batch = next(iter(loader)).to_dict()
    if kind == "step":
        model.eval()
        return lambda: model(dict(batch), training=False, compute_force=True)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    e_ref = torch.zeros(len(graphs))
    f_ref = torch.zeros_like(batch["positions"])

    def run():
        out = model(dict(batch), training=True, compute_force=True)
        loss = (out["energy"] - e_ref).pow(2).mean() + (out["forces"] - f_ref).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def _timed(request: dict, calls: dict, hidden_irreps: str) -> dict:
    """Answer a ``{"time", "kind", "calls"}`` request: ms per call, measured here."""
    from models import systems

    key = (request["time"], request["kind"])
    if key not in calls:
        torch.manual_seed(0)
        calls[key] = mace_call(mace_model(hidden_irreps), systems()[key[0]], key[1])
    run, n = calls[key], request["calls"]
    start = time.perf_counter()
    for _ in range(n):
        run()
    return {"ms": (time.perf_counter() - start) / n * 1e3}


def worker(threads: int, hidden_irreps: str) -> None:
    """Serve MACE segments: one JSON request a line on stdin, one ``@`` + JSON line back."""
    import e3nn
    import mace

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = md_systems()
    with tempfile.TemporaryDirectory() as tmp:
        make = mace_calculator(Path(tmp), hidden_irreps)
        reply = {"mace": mace.__version__, "e3nn": e3nn.__version__}
        print("@" + json.dumps(reply), flush=True)
        calls = {}  # (system, kind) → the call of bench/models.py's timing requests
        for line in sys.stdin:
            request = json.loads(line)
            try:
                if "time" in request:
                    reply = _timed(request, calls, hidden_irreps)
                else:
                    system, seed, steps = request["system"], request["seed"], request["steps"]
                    reply = segment(data[system], make, seed, steps)
            except Exception as err:  # the main process reports it on the row
                reply = {"error": f"{type(err).__name__}: {err}"}
            print("@" + json.dumps(reply), flush=True)


class Worker:
    """The MACE worker process; ``segment(system, seed, steps)`` as in this process."""

    def __init__(self, python: Path, threads: int, hidden_irreps: str) -> None:
        if not python.exists():
            raise SystemExit(
                f"{python}: not found; `make .venv-mace/bin/.installed` builds MACE's venv "
                "(or leave mace out of --models)"
            )
        command = [str(python), __file__, "--threads", str(threads)]
        self.process = subprocess.Popen(
            command + ["--mace-hidden", hidden_irreps],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.versions = self._reply()

    def _reply(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("@"):
                return json.loads(line[1:])
        raise RuntimeError(f"MACE worker exited ({self.process.wait()})")

    def segment(self, system: str, seed: int, steps: int) -> dict:
        request = {"system": system, "seed": seed, "steps": steps}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self._reply()
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def timed(self, system: str, kind: str):
        """A function of ``bench/models.py``: calling it runs one call here; its ``timed(n)``
        runs ``n`` and returns the worker's own ms per call (no pipe in the time)."""

        def request(n: int) -> float:
            self.process.stdin.write(json.dumps({"time": system, "kind": kind, "calls": n}) + "\n")
            self.process.stdin.flush()
            reply = self._reply()
            if "error" in reply:
                raise RuntimeError(reply["error"])
            return reply["ms"]

        def call() -> None:
            request(1)

        call.timed = request
        return call

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mace-hidden", default=MACE["hidden_irreps"])
    args = parser.parse_args()
    worker(args.threads, args.mace_hidden)


if __name__ == "__main__":
    main()
