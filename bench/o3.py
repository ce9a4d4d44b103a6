"""Benchmark euclidnn.o3 against e3nn 0.6 in one process.

Cases: spherical harmonics (component normalization, normalize=True) for lmax 2 and 3 on
100,000 float32 vectors, forward and forward+backward; construction of every Wigner 3j
with l1, l2, l3 ≤ 6 with all caches cleared. Each case: warm-up, then ≥ 10 interleaved
repeats (ours, e3nn, ours, …); the median is reported. speedup = e3nn / ours.

    python bench/o3.py [--repeats 15] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from machine import header

from euclidnn.o3 import spherical_harmonics, wigner_3j
from euclidnn.o3 import wigner as our_wigner


def _time_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def _interleaved(ours, theirs, repeats: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        ours()
        theirs()
    times_ours, times_theirs = [], []
    for _ in range(repeats):
        times_ours.append(_time_ms(ours))
        times_theirs.append(_time_ms(theirs))
    return statistics.median(times_ours), statistics.median(times_theirs)


def _sh_cases(e3nn_o3, n: int):
    x = torch.randn(n, 3, dtype=torch.float32)
    for lmax in (2, 3):
        ls = list(range(lmax + 1))

        def ours_fwd(ls=ls):
            spherical_harmonics(ls, x, normalize=True, normalization="component")

        def theirs_fwd(ls=ls):
            e3nn_o3.spherical_harmonics(ls, x, normalize=True, normalization="component")

        def ours_bwd(ls=ls):
            xg = x.detach().requires_grad_()
            spherical_harmonics(ls, xg, normalize=True, normalization="component").pow(
                2
            ).sum().backward()

        def theirs_bwd(ls=ls):
            xg = x.detach().requires_grad_()
            e3nn_o3.spherical_harmonics(ls, xg, normalize=True, normalization="component").pow(
                2
            ).sum().backward()

        yield f"spherical_harmonics lmax={lmax} n={n} forward", ours_fwd, theirs_fwd
        yield f"spherical_harmonics lmax={lmax} n={n} forward+backward", ours_bwd, theirs_bwd


def _triples(lmax: int):
    return [
        (l1, l2, l3)
        for l1 in range(lmax + 1)
        for l2 in range(lmax + 1)
        for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1)
    ]


def _w3j_case(lmax: int = 6):
    from e3nn.o3 import _wigner as e3nn_wigner

    triples = _triples(lmax)

    def ours():
        our_wigner._wigner_3j.cache_clear()
        our_wigner._complex_to_real.cache_clear()
        for t in triples:
            wigner_3j(*t)

    def theirs():
        e3nn_wigner._so3_clebsch_gordan.cache_clear()
        e3nn_wigner._su2_clebsch_gordan.cache_clear()
        for t in triples:
            e3nn_wigner.wigner_3j(*t, dtype=torch.float64)

    return f"wigner_3j all {len(triples)} triples l<=6, caches cleared", ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--json", type=str, default=None, help="write the results as a JSON list here"
    )
    args = parser.parse_args()
    if args.repeats < 10:
        parser.error("--repeats must be >= 10")
    print(header(), flush=True)

    import e3nn.o3 as e3nn_o3

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = list(_sh_cases(e3nn_o3, args.n)) + [_w3j_case()]
    rows = []
    for name, ours, theirs in cases:
        repeats = args.repeats if "wigner_3j" not in name else max(10, args.repeats // 3)
        ours_ms, e3nn_ms = _interleaved(
            ours, theirs, repeats, warmup=3 if "wigner_3j" not in name else 1
        )
        rows.append(
            {"case": name, "ours_ms": ours_ms, "e3nn_ms": e3nn_ms, "speedup": e3nn_ms / ours_ms}
        )

    width = max(len(r["case"]) for r in rows)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32 SH; median of {args.repeats}"
    )
    print(f"| {'case':<{width}} | ours ms | e3nn ms | speedup |")
    print(f"|{'-' * (width + 2)}|--------:|--------:|--------:|")
    for r in rows:
        print(
            f"| {r['case']:<{width}} | {r['ours_ms']:7.2f} | {r['e3nn_ms']:7.2f} | {r['speedup']:6.2f}x |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
