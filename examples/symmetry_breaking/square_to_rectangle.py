"""Square → rectangle: learn the order parameter that breaks D4h down to D2h (the seed's example).

Four points of a square (D4h) must map to a 1.2 × 0.8 rectangle (D2h). No equivariant model
can do it: every output displacement is forbidden by D4h (the loss floor below). We give the
points one shared learnable input o with irreps l ≤ 4 of both parities and fit it jointly
with the model, with a group-lasso penalty that switches off the irreps the data does not need.
What survives lies in B1g of D4h — the x² − y²-like components at l = 2 (and l = 4) — and
the model then maps the square onto the rectangle.

Run: python examples/symmetry_breaking/square_to_rectangle.py --out runs/symmetry_breaking
(about 20 s on one CPU core; writes square_to_rectangle.png)
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
from euclidnn.o3 import CartesianTensor  # noqa: E402
from euclidnn.symmetry import (  # noqa: E402
    OrderParameterConfig,
    learn_order_parameter,
    loss_floor,
    point_group,
    projector,
    representation,
    sphere_signal,
    stabilizer,
)

IRREPS = "0e + 0o + 1e + 1o + 2e + 2o + 3e + 3o + 4e + 4o"


def b1g_error(order: torch.Tensor, irreps: str, group) -> float:
    """max_g |D(g) o' − χ_B1g(g) o'| / |o'|, o' the symmetry-breaking part of o (A1g removed)."""
    v = CartesianTensor("ij=ji").from_cartesian(
        torch.diag(torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64))
    )[1:]
    chi = torch.einsum("a,gab,b->g", v, representation("2e", group), v) / v.dot(v)  # ±1
    o = order - projector(irreps, group) @ order
    D = representation(irreps, group)
    return float((D @ o - chi[:, None] * o).norm(dim=-1).max() / o.norm())


def main(steps: int = 1500, out: Path = Path("runs/symmetry_breaking")) -> dict:
    square = Structure.from_ase(Atoms("C4", [[1, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]]))
    rectangle = square.positions * [1.2, 0.8, 1.0]
    target = torch.tensor(rectangle - square.positions)  # displacements, Å
    group = point_group(square)
    print(
        f"input {group.name} (order {group.order}), target {point_group((square.numbers, rectangle)).name}"
    )
    floor = loss_floor(target, "1o", group)
    print(
        f"without an order parameter: loss floor {floor.floor:.5f} Å² (all {floor.forbidden_per_irrep})"
    )

    config = OrderParameterConfig(irreps=IRREPS, r_max=3.0, lmax_sh=4, steps=steps)
    result = learn_order_parameter(square, target, config=config)
    order = result.order_parameter[0]
    print("order parameter norm per irrep:", ", ".join(f"{k} {v:.4f}" for k, v in result.norms))
    left = stabilizer(result.order_parameter, IRREPS, group, tolerance=1e-2)
    error = b1g_error(order, IRREPS, group)
    deviation = float((result.prediction - target).abs().max())
    print(
        f"it leaves {left.name}; distance from B1g of D4h {error:.1e}; max |prediction − rectangle| {deviation:.1e} Å"
    )

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].semilogy(
        np.arange(len(result.history)) * 10, result.history, label="mean squared error"
    )
    axes[0].axhline(floor.floor, color="k", ls="--", label="floor without order parameter")
    axes[0].set(xlabel="step", ylabel="Å²", title="training")
    axes[0].legend()
    predicted = square.positions + result.prediction.numpy()
    for points, style, label in (
        (square.positions, "o", "square"),
        (rectangle, "s", "rectangle"),
        (predicted, "x", "prediction"),
    ):
        axes[1].plot(*np.append(points, points[:1], 0)[:, :2].T, style + "-", label=label, ms=9)
    axes[1].set(aspect="equal", title="input, target and prediction")
    axes[1].legend()
    theta, phi = np.meshgrid(
        np.linspace(0, np.pi, 90), np.linspace(-np.pi, np.pi, 180), indexing="ij"
    )
    directions = np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1
    )
    signal = sphere_signal(order, IRREPS, torch.tensor(directions))
    image = axes[2].pcolormesh(phi, theta, signal.numpy(), cmap="RdBu_r", shading="auto")
    axes[2].set(
        xlabel="φ (azimuth from x)", ylabel="θ (from z)", title="order parameter on the sphere"
    )
    fig.colorbar(image, ax=axes[2])
    fig.tight_layout()
    fig.savefig(out / "square_to_rectangle.png", dpi=100)
    print(f"wrote {out / 'square_to_rectangle.png'}")
    return {
        "norms": dict(result.norms),
        "subgroup": left.name,
        "b1g_error": error,
        "deviation": deviation,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path("runs/symmetry_breaking"))
    args = parser.parse_args()
    main(args.steps, args.out)
