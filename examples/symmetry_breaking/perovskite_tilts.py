"""Cubic perovskite Pm-3m → orthorhombic Pnma: learn the octahedral tilts as the order parameter.

The input is cubic SrTiO3 in a 2×2×2 supercell (40 atoms, still Pm-3m); the target moves the
oxygens as the a⁻b⁺a⁻ tilt pattern of GdFeO3-type perovskites does (to first order in the tilt
angles: each O moves by ω × r from the TiO6 octahedra it belongs to). Pm-3m forbids every such
displacement. We give each Ti site a learnable input with irreps l ≤ 2 of both parities and fit
it jointly with an equivariant model under a sparsity penalty. The order parameter that comes
out is a pseudovector (1e) on every Ti — the rotation axis of its octahedron — with the a⁻b⁺a⁻
sign pattern; the predicted structure has space group 62 (Pnma). Fixing the y component of
the pseudovector at 0 (the constraint of the intermediate symmetry: no in-phase tilt) gives
a⁻b⁰a⁻ and space group 74 (Imma).

Run: python examples/symmetry_breaking/perovskite_tilts.py --out runs/symmetry_breaking
(about a minute on one CPU core; writes perovskite_tilts.png)
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase import Atoms  # noqa: E402

from euclidnn.data import Structure  # noqa: E402
from euclidnn.o3 import Irreps  # noqa: E402
from euclidnn.symmetry import (  # noqa: E402
    OrderParameterConfig,
    learn_order_parameter,
    loss_floor,
    space_group,
    stabilizer,
)

IRREPS = Irreps("0e + 0o + 1e + 1o + 2e + 2o")
A = 3.905  # Å, cubic SrTiO3


def cubic_supercell() -> Atoms:
    unit = Atoms(
        "SrTiO3",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        cell=np.eye(3) * A,
        pbc=True,
    )
    return unit.repeat((2, 2, 2))


def tilt_displacements(atoms: Atoms, tilt: tuple[float, float, float]) -> np.ndarray:
    """O displacements of a⁻b⁺a⁻ tilts (radians about x, y, z), first order: ω_s × (r_O − r_s)."""
    displacements = np.zeros((len(atoms), 3))
    titanium = np.flatnonzero(atoms.numbers == 22)
    for o in np.flatnonzero(atoms.numbers == 8):
        for s in titanium:
            d = atoms.positions[o] - atoms.positions[s]
            d -= np.round(d / (2 * A)) * 2 * A  # nearest image in the 2a cell
            if np.linalg.norm(d) < 0.6 * A:
                n = np.round(atoms.positions[s] / A - 0.5).astype(int)  # the Ti's cubic cell
                out_of_phase, in_phase = (-1) ** n.sum(), (-1) ** (n[0] + n[2])
                omega = np.array(
                    [tilt[0] * out_of_phase, tilt[1] * in_phase, tilt[2] * out_of_phase]
                )
                displacements[o] += np.cross(omega, d) / 2  # each O belongs to two octahedra
    return displacements


def main(
    steps: int = 1500, out: Path = Path("runs/symmetry_breaking"), tilt=(0.08, 0.06, 0.08)
) -> dict:
    cubic = cubic_supercell()
    target = tilt_displacements(cubic, tilt)
    tilted = cubic.copy()
    tilted.positions += target
    group = space_group(cubic)
    print(
        f"input {group.name} ({group.number}), target {space_group(tilted).name} ({space_group(tilted).number})"
    )
    floor = loss_floor(torch.tensor(target), "1o", group)
    print(
        f"without an order parameter: loss floor {floor.floor:.2e} Å² = mean target² {np.mean(target**2):.2e}"
    )

    titanium = np.flatnonzero(cubic.numbers == 22)
    sites = np.full(len(cubic), -1)
    sites[titanium] = np.arange(len(titanium))  # one row per Ti octahedron
    no_in_phase_tilt = torch.ones(len(titanium), IRREPS.dim, dtype=torch.bool)
    no_in_phase_tilt[:, IRREPS.slices()[2].start + 1] = False  # the y component of 1e fixed at 0
    config = OrderParameterConfig(irreps=str(IRREPS), r_max=2.5, lmax_sh=2, steps=steps)
    results = {}
    for label, mask in (("free", None), ("y tilt fixed at 0", no_in_phase_tilt)):
        result = learn_order_parameter(
            Structure.from_ase(cubic), torch.tensor(target), config=config, sites=sites, mask=mask
        )
        predicted = cubic.copy()
        predicted.positions += result.prediction.numpy()
        predicted_group = space_group(predicted, tolerance=1e-3)
        left = stabilizer(result.order_parameter, IRREPS, group, sites=sites, tolerance=1e-2)
        print(
            f"[{label}] mse {result.loss:.1e} Å²; norm per irrep:",
            ", ".join(f"{k} {v:.4f}" for k, v in result.norms),
        )
        print(
            f"[{label}] the order parameter keeps {left.order} of the {group.order} elements; the predicted "
            f"structure has space group {predicted_group.name} ({predicted_group.number}), {predicted_group.order} elements"
        )
        orders = (left.order, predicted_group.order)
        results[label] = dict(
            norms=dict(result.norms), number=predicted_group.number, orders=orders, result=result
        )

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for label, r in results.items():
        axes[0].semilogy(
            np.arange(len(r["result"].history)) * 10,
            r["result"].history,
            label=f"{label} → {r['number']}",
        )
    axes[0].axhline(floor.floor, color="k", ls="--", label="floor without order parameter")
    axes[0].set(xlabel="step", ylabel="Å²", title="training")
    axes[0].legend()
    for ax, (label, r) in zip(axes[1:], results.items()):
        pseudovector = r["result"].order_parameter[:, IRREPS.slices()[2]].numpy()
        for k, axis in enumerate("xyz"):
            ax.bar(
                np.arange(len(titanium)) + 0.25 * (k - 1),
                pseudovector[:, k],
                width=0.25,
                label=f"1e {axis}",
            )
        others = sum(v for k, v in r["norms"].items() if k != "1x1e")
        ax.set(xlabel="Ti site", title=f"{label}: 1e per site (other irreps: {others:.0e})")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "perovskite_tilts.png", dpi=100)
    print(f"wrote {out / 'perovskite_tilts.png'}")
    return {label: {k: v for k, v in r.items() if k != "result"} for label, r in results.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path("runs/symmetry_breaking"))
    args = parser.parse_args()
    main(args.steps, args.out)
