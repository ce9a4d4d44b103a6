"""Is there a periodic table in the learned element embeddings? PCA of a trained model's table,
of its initial (random) table, and of what training changed (final − initial).

`euclidnn train` seeds the weights with run.seed just before it builds the model, and the
embedding table is the first thing a SchNet or NequIP draws, so the initial table is rebuilt
exactly from the config and the seed.

Run: python examples/element_embeddings/analyse.py runs/many-elements/schnet/model.safetensors \
        --out runs/many-elements/pca [--seed 0]
"""

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from euclidnn.interpret import embedding_pca, write_embedding_pca
from euclidnn.models import load_model

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model")
parser.add_argument("--out", default="runs/embeddings")
parser.add_argument("--seed", type=int, default=0, help="run.seed of the training run")
args = parser.parse_args()


def permutation_p_values(pca, permutations=5000):
    """P(shuffled labels agree at least as often): same points, groups/periods permuted."""
    observed = pca.neighbour_agreement()
    rng = np.random.default_rng(0)
    counts = {"group": 0, "period": 0}
    for _ in range(permutations):
        order = rng.permutation(len(pca.species))
        shuffled = type(pca)(
            pca.species, pca.components, pca.explained_variance_ratio,
            tuple(np.array(pca.groups)[order]), tuple(np.array(pca.periods)[order]),
        )  # fmt: skip
        agreement = shuffled.neighbour_agreement()
        for key in counts:
            counts[key] += agreement[f"same_{key}"] >= observed[f"same_{key}"]
    return {f"p_same_{key}": round((c + 1) / (permutations + 1), 4) for key, c in counts.items()}


trained = load_model(args.model)
torch.manual_seed(args.seed)
initial = type(trained)(trained.config)
change = copy.deepcopy(trained)
with torch.no_grad():
    change.embedding.weight -= initial.embedding.weight.to(change.embedding.weight.dtype)
moved = float(change.embedding.weight.detach().norm() / trained.embedding.weight.detach().norm())
name = type(trained).__name__
summary = {"relative_change_of_the_table": moved}
for label, model in (("trained", trained), ("initial", initial), ("change", change)):
    pca = embedding_pca(model)
    title = f"{name} embeddings, {label}" + (" (final − initial)" if label == "change" else "")
    write_embedding_pca(pca, Path(args.out) / label, title)
    summary[label] = {
        "explained_variance_ratio": [round(float(v), 4) for v in pca.explained_variance_ratio],
        **{k: round(v, 3) for k, v in pca.neighbour_agreement().items()},
        **permutation_p_values(pca),
    }
print(json.dumps(summary, indent=1))
(Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
