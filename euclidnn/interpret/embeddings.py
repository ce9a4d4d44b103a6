"""What a model learned about the elements: PCA of its species embeddings, by periodic group.

SchNet starts every atom from a learned row of its embedding table, h⁰_i = e_{Z_i}; the SchNet
paper (Schütt et al. 2018, Fig. 4) shows that the first two principal components of these rows
order the elements like the periodic table when the training set holds enough of them. NequIP
starts from the same kind of table (``NequIP.embedding``: the scalar features h⁰ its first
layer convolves); a :class:`~euclidnn.models.TensorHead` uses its trunk's.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch  # noqa: F401 (used by the doctests, which run in this module's globals)
from ase.data import chemical_symbols

from euclidnn.files import replacing, write_text
from euclidnn.models.interface import Potential

__all__ = [
    "EmbeddingPCA",
    "species_embeddings",
    "embedding_pca",
    "periodic_group",
    "periodic_period",
    "plot_embedding_pca",
    "write_embedding_pca",
]

_PERIOD_ENDS = (2, 10, 18, 36, 54, 86, 118)  # atomic number of the last element of each period


def periodic_period(number: int) -> int:
    """Period (row) of the periodic table of atomic number ``number`` (1…118).

    >>> periodic_period(1), periodic_period(11), periodic_period(53)
    (1, 3, 5)
    """
    if not 1 <= number <= 118:
        raise ValueError(f"atomic number must be in 1..118, got {number}")
    return next(row + 1 for row, end in enumerate(_PERIOD_ENDS) if number <= end)


def periodic_group(number: int) -> int:
    """Group (column 1…18, IUPAC) of atomic number ``number``; lanthanides and actinides
    (La–Yb, Ac–No) are given group 3.

    >>> [periodic_group(z) for z in (1, 2, 6, 9, 11, 26, 35, 56, 82)]
    [1, 18, 14, 17, 1, 8, 17, 2, 14]
    """
    period = periodic_period(number)
    position = number - (0 if period == 1 else _PERIOD_ENDS[period - 2]) - 1  # 0-based
    if period == 1:
        return 1 if position == 0 else 18
    if period <= 3:
        return position + 1 if position < 2 else position + 11
    if period <= 5:
        return position + 1
    if position < 2:
        return position + 1
    return 3 if position < 16 else position - 13


def species_embeddings(model: Potential) -> tuple[tuple[int, ...], np.ndarray]:
    """The atomic numbers a model knows and its learned embedding row of each.

    The model's :meth:`~euclidnn.models.Potential.species_embeddings`: SchNet's h⁰ = e_Z,
    NequIP's scalar species features that its first layer convolves, a TensorHead's trunk's.

    Shapes: → (species [n_species], embeddings [n_species, F])

    >>> from euclidnn.models import SchNet, SchNetConfig
    >>> species, table = species_embeddings(SchNet(SchNetConfig(species=(1, 8), num_features=4)))
    >>> species, table.shape
    ((1, 8), (2, 4))
    """
    table = model.species_embeddings() if isinstance(model, Potential) else None
    if table is None:
        raise TypeError(f"{type(model).__name__}: the model has no species embedding table")
    return model.species, table.detach().cpu().double().numpy().copy()


@dataclass(frozen=True)
class EmbeddingPCA:
    """Principal components of a model's species embeddings.

    Attributes:
        species: atomic numbers, one per row.
        components: coordinates of each species on the principal axes (centred rows of the
            embedding table projected on them), sign fixed so that each axis's largest
            loading is positive.
        explained_variance_ratio: fraction of the total variance along each axis.
        groups, periods: periodic-table group and period of each species.

    Shapes: species: [n], components: [n, k], explained_variance_ratio: [k]
    """

    species: tuple[int, ...]
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    groups: tuple[int, ...]
    periods: tuple[int, ...]

    @property
    def symbols(self) -> list[str]:
        return [chemical_symbols[z] for z in self.species]

    def neighbour_agreement(self) -> dict[str, float]:
        """How periodic-table-like the first two components are, against chance.

        For each species, its nearest other species in the (PC1, PC2) plane: the fraction of
        species whose nearest neighbour is in the same group (``same_group``) or period
        (``same_period``), and the fractions expected if the points were shuffled
        (``*_chance`` = mean over species of (others in its group) / (n − 1)).
        """
        points = self.components[:, :2]
        n = len(self.species)
        distance = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.diag(
            np.full(n, np.inf)
        )
        nearest = distance.argmin(axis=1)
        result = {}
        for name, labels in (("group", self.groups), ("period", self.periods)):
            labels = np.asarray(labels)
            result[f"same_{name}"] = float(np.mean(labels[nearest] == labels))
            others = np.array([(labels == lab).sum() - 1 for lab in labels])
            result[f"same_{name}_chance"] = float(np.mean(others / max(n - 1, 1)))
        return result


def embedding_pca(model: Potential, num_components: int = 2) -> EmbeddingPCA:
    r"""PCA of a model's species embeddings (:func:`species_embeddings`).

    X̃ = X − mean over species,  X̃ = U S Vᵀ (SVD),  components = X̃ V[:, :k] = U S,
    explained variance ratio_k = S_k² / Σ S².

    Shapes: → EmbeddingPCA(components [n_species, num_components])

    >>> from euclidnn.models import SchNet, SchNetConfig
    >>> pca = embedding_pca(SchNet(SchNetConfig(species=(1, 6, 7, 8), num_features=8)))
    >>> pca.components.shape, bool(0 < pca.explained_variance_ratio.sum() <= 1 + 1e-12)
    ((4, 2), True)
    """
    species, table = species_embeddings(model)
    if len(species) < 2:
        raise ValueError(f"{type(model).__name__}: PCA needs at least two species, has {species}")
    centred = table - table.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(num_components, vt.shape[0])
    axes = vt[:k]
    signs = np.sign(axes[np.arange(k), np.abs(axes).argmax(axis=1)])
    components = centred @ (axes * signs[:, None]).T
    if k < num_components:  # fewer species than components: pad with zero axes
        components = np.pad(components, ((0, 0), (0, num_components - k)))
    variance = s**2
    total = variance.sum()
    ratio = variance[:k] / total if total > 0 else np.zeros(k)
    ratio = np.pad(ratio, (0, num_components - k))
    return EmbeddingPCA(
        species=species,
        components=components,
        explained_variance_ratio=ratio,
        groups=tuple(periodic_group(z) for z in species),
        periods=tuple(periodic_period(z) for z in species),
    )


def plot_embedding_pca(pca: EmbeddingPCA, path: str | os.PathLike, title: str = "") -> None:
    """Scatter of (PC1, PC2), one labelled point per element, coloured by periodic group;
    written atomically as PNG."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # no pyplot: no backend, no global figure registry

    colours = colormaps["tab20"]
    figure = Figure(figsize=(6.4, 5.2))
    axis = figure.subplots()
    for group in sorted(set(pca.groups)):
        rows = [i for i, g in enumerate(pca.groups) if g == group]
        axis.scatter(
            pca.components[rows, 0],
            pca.components[rows, 1],
            s=90,
            color=colours((group - 1) % 20),
            label=f"group {group}",
            edgecolor="black",
            linewidth=0.5,
        )
    for symbol, (x, y) in zip(pca.symbols, pca.components[:, :2]):
        axis.annotate(symbol, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=9)
    ratio = pca.explained_variance_ratio
    axis.set_xlabel(f"PC1 ({100 * ratio[0]:.1f} % of the variance)")
    axis.set_ylabel(f"PC2 ({100 * ratio[1]:.1f} % of the variance)")
    axis.set_title(title or "species embeddings, first two principal components")
    axis.legend(fontsize=7, ncol=2, loc="best")
    figure.tight_layout()
    with replacing(path) as tmp:
        figure.savefig(tmp, format="png", dpi=130)


def write_embedding_pca(pca: EmbeddingPCA, out: str | os.PathLike, title: str = "") -> list[Path]:
    """Write ``embeddings_pca.png``, ``embeddings_pca.csv`` (symbol, Z, group, period, PCs)
    and ``embeddings_pca.json`` (explained variance, neighbour agreement) into ``out``,
    each atomically. Returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    k = pca.components.shape[1]
    writer.writerow(["symbol", "Z", "group", "period", *[f"pc{i + 1}" for i in range(k)]])
    for row, (symbol, z, g, p) in enumerate(zip(pca.symbols, pca.species, pca.groups, pca.periods)):
        writer.writerow([symbol, z, g, p, *[f"{v:.8g}" for v in pca.components[row]]])
    summary = {
        "species": list(pca.species),
        "explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio],
        "nearest_neighbour_in_pc_plane": pca.neighbour_agreement(),
    }
    paths = [out / "embeddings_pca.png", out / "embeddings_pca.csv", out / "embeddings_pca.json"]
    plot_embedding_pca(pca, paths[0], title)
    write_text(paths[1], text.getvalue())
    write_text(paths[2], json.dumps(summary, indent=2) + "\n")
    return paths
