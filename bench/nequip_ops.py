"""Where an energy + forces call spends its operations: ATen operators counted per module
(forward) and in the backward pass, then PyTorch's profiler table of self CPU time (issue 24:
the gap to nequip on small molecules is per-call overhead, not arithmetic).

    python bench/nequip_ops.py [--model nequip] [--system ethanol] [--lmax 1] [--threads 1]

``--model``: ``nequip`` (bench/models.py's NequIP: 4 layers, 32 features, r_max 5 Å; ``--lmax``),
``allegro`` (bench/models.py's Allegro: lmax 1, 2 layers, 16 tensor features, latent 64), or a
peer at the same hyperparameters, ``peer-nequip`` (nequip) or ``peer-allegro``
(nequip-allegro), which need the benchmark environment. Float32, random weights; ours is
called through :func:`euclidnn.models.predict` as MD calls it, a peer's through autograd on
its energy (bench/models.py). The counts do not depend on the machine's load; the profiler's
times do (read them as shares).
"""

from __future__ import annotations

import argparse
import collections
import re

import torch
from machine import header
from models import (
    ours_allegro,
    ours_input,
    ours_nequip,
    ours_step,
    peer_allegro,
    peer_nequip,
    peer_nequip_input,
    peer_nequip_step,
    systems,
)
from torch.utils._python_dispatch import TorchDispatchMode

MODELS = {  # name: (make the model, its input from a list of Atoms, its energy + forces call)
    "nequip": (lambda lmax: ours_nequip(lmax), ours_input, ours_step),
    "allegro": (lambda lmax: ours_allegro(), ours_input, ours_step),
    "peer-nequip": (lambda lmax: peer_nequip(lmax), peer_nequip_input, peer_nequip_step),
    "peer-allegro": (lambda lmax: peer_allegro(), peer_nequip_input, peer_nequip_step),
}


class _Counter(TorchDispatchMode):
    """Counts every ATen call under the innermost module (indices of layers folded: layers.*)
    that is running its forward; calls outside any module's forward go to "backward" (run by
    autograd's engine, or by a hand-written backward it calls) or "other forward" (the graph's
    geometry, a model's fast path that calls no submodule)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.stack = ["other forward"]
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.handles = []
        for name, module in model.named_modules():
            if name and name.count(".") <= 3:
                name = re.sub(r"\.\d+", ".*", name)
                self.handles.append(module.register_forward_pre_hook(self._enter(name)))
                self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, name: str):
        return lambda module, inputs: self.stack.append(name)

    def _leave(self, module, inputs, output) -> None:
        self.stack.pop()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        where = self.stack[-1]
        if len(self.stack) == 1 and torch._C._current_graph_task_id() != -1:
            where = "backward"
        self.counts[where][str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nequip", choices=list(MODELS))
    parser.add_argument("--system", default="ethanol", choices=list(systems()))
    parser.add_argument("--lmax", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(header(), flush=True)
    torch.manual_seed(0)
    make, make_input, make_step = MODELS[args.model]
    model = make(args.lmax)
    torch.set_default_dtype(torch.float32)
    call = make_step(model, make_input(systems()[args.system]))
    call()  # warm-up: kernels built, caches filled
    counter = _Counter(model)
    with counter:
        call()
    for handle in counter.handles:
        handle.remove()
    total = sum(sum(c.values()) for c in counter.counts.values())
    name = f"{args.model} l{args.lmax}" if args.model.endswith("nequip") else args.model
    print(f"# {name}, {args.system}: {total} ATen calls per energy + forces call")
    print("| where | calls | most frequent |\n| --- | ---: | --- |")
    for where, counts in sorted(counter.counts.items(), key=lambda kv: -sum(kv[1].values())):
        common = ", ".join(f"{op} {n}" for op, n in counts.most_common(6))
        print(f"| {where} | {sum(counts.values())} | {common} |")

    from torch.profiler import ProfilerActivity, profile

    calls = 20
    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        for _ in range(calls):
            call()
    events = profiled.key_averages()
    print(f"\n# profiler: {sum(e.count for e in events) / calls:.0f} events per call "
          "(operators and their sub-operators), self CPU time")  # fmt: skip
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
