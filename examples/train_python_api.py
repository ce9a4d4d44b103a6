"""Train and evaluate a potential from Python: what `euclidnn train` and `euclidnn evaluate`
do, in the library's own calls. Run: python examples/train_python_api.py [--epochs 20]"""

import argparse

import torch

from euclidnn.data import load_dataset, split
from euclidnn.models import NequIP, NequIPConfig, load_model
from euclidnn.train import TrainConfig, compare, data_statistics, fit, metrics
from euclidnn.train.loss import labelled_pairs

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--n-train", type=int, default=200)
parser.add_argument("--out", default="runs/python-api")
args = parser.parse_args()

parts = split(load_dataset("ethanol"), n_train=args.n_train, n_valid=50, n_test=200, seed=0)
stats = data_statistics(parts.train, r_max=4.0)  # species, energy shifts, force scale, neighbours
torch.manual_seed(0)
model = NequIP(
    NequIPConfig(
        species=stats.species, r_max=4.0, lmax=1, num_features=16, num_layers=2,
        energy_shifts=stats.energy_shifts, energy_scales=stats.energy_scale,
        avg_num_neighbors=stats.avg_num_neighbors,
    )
)  # fmt: skip
config = TrainConfig.from_dict({"run": {"max_epochs": args.epochs}})
result = fit(model, parts.train, parts.valid, config, out=args.out, progress=False)

# `model` now holds the last raw weights; the saved model has the best validated EMA weights
best = load_model(f"{args.out}/model.safetensors")
test, _ = compare(best, labelled_pairs(parts.test, 4.0, torch.float32, config.loss), config.loss)
values = metrics(test)
print(
    f"{result.steps} steps in {result.seconds:.0f} s ({result.stop_reason}); test set: "
    f"energy {values['energy_per_atom_mae_meV']:.2f} meV/atom, "
    f"forces {values['forces_mae_meV_per_A']:.1f} meV/Å; model: {args.out}/model.safetensors"
)
