"""The plot (MAE and equivariance error vs N, per property) and the markdown table of
compare.py's results."""

import os
from pathlib import Path

UNITS = {"dipole": "e·Å", "polarizability": "Å³"}


def plot_and_table(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    properties = list(dict.fromkeys(r["property"] for r in results))
    models = list(dict.fromkeys(r["model"] for r in results))
    figure, axes = plt.subplots(
        2, len(properties), figsize=(5.5 * len(properties), 8), squeeze=False
    )
    for column, name in enumerate(properties):
        for model in models:
            rows = [r for r in results if r["property"] == name and r["model"] == model]
            if not rows:
                continue
            style = "o-" if model.startswith("MLP") else "s-"
            n = [r["n"] for r in rows]
            axes[0, column].plot(n, [r["mae"] for r in rows], style, label=model)
            floor = [max(r["equivariance"], 1e-17) for r in rows]
            axes[1, column].plot(n, floor, style, label=model)
        axes[0, column].set_title(f"{name} ({UNITS[name]})")
        axes[0, column].set_ylabel(f"test MAE, rotated test set ({UNITS[name]})")
        axes[1, column].set_ylabel(f"equivariance error |f(Rx) − R·f(x)| ({UNITS[name]})")
        for axis in axes[:, column]:
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xlabel("training structures N")
            axis.grid(alpha=0.3, which="both")
        axes[0, column].legend(fontsize=8)
    figure.tight_layout()
    tmp = out / "tensor_properties.png.tmp"
    figure.savefig(tmp, format="png", dpi=110)
    os.replace(tmp, out / "tensor_properties.png")
    plt.close(figure)

    sizes = sorted({r["n"] for r in results})
    lines = []
    for name in properties:
        lines += [
            f"\n**{name}** ({UNITS[name]}): test MAE / equivariance error\n",
            "| model | " + " | ".join(f"N = {n}" for n in sizes) + " |",
            "| --- |" + " --- |" * len(sizes),
        ]
        for model in models:
            cells = {r["n"]: r for r in results if r["property"] == name and r["model"] == model}
            if cells:
                values = [
                    f"{cells[n]['mae']:.4f} / {cells[n]['equivariance']:.0e}" if n in cells else ""
                    for n in sizes
                ]
                lines.append(f"| {model} | " + " | ".join(values) + " |")
    tmp = out / "results.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out / "results.md")
