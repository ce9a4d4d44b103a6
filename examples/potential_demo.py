"""Fit a small NequIP potential to the shipped ethanol data (GFN2-xTB, 500 K) and report how
accurate it is on held-out frames.

What it shows, end to end: `load_dataset` → `split` → per-species energy shifts by least
squares → `AtomsDataset` / `make_loader` → `predict(..., training=True)` with an energy + force
loss → test-set MAE of energy (meV/atom) and forces (meV/Å), compared with the baseline that
knows only the per-species shifts; a parity plot of the forces; the model saved to
safetensors and reloaded, giving the same numbers; and the forces of the trained model
checked for rotation equivariance.

Run: python examples/potential_demo.py [--minutes 2] [--out runs/demo]
(`make demo` runs it; a few minutes on 2 CPU cores.)
"""

import argparse
import time
from pathlib import Path

import torch

from euclidnn.data import AtomsDataset, energy_shifts, load_dataset, make_loader, split
from euclidnn.models import NequIP, NequIPConfig, load_model, predict, save_model
from euclidnn.o3 import rand_matrix

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--minutes", type=float, default=2.0, help="training time budget")
parser.add_argument("--n-train", type=int, default=200)
parser.add_argument("--out", type=Path, default=Path("runs/demo"))
args = parser.parse_args()
torch.manual_seed(0)
torch.set_num_threads(2)
args.out.mkdir(parents=True, exist_ok=True)

structures = load_dataset("ethanol")
parts = split(structures, n_train=args.n_train, n_valid=50, n_test=200, seed=0)
shifts = energy_shifts(parts.train)  # {Z: eV}, least squares on the training set only
species = tuple(sorted(shifts))
print(
    f"ethanol, GFN2-xTB: {len(structures)} frames; train {len(parts.train)}, "
    f"test {len(parts.test)}; per-species shifts (eV) "
    + ", ".join(f"Z={z}: {e:.3f}" for z, e in shifts.items())
)

# energies of these frames vary by ~1 eV around the shifts: scale atomic energies to that
residual = torch.tensor([s.energy - sum(shifts[int(z)] for z in s.numbers) for s in parts.train])
scale = float(residual.std() / len(parts.train[0].numbers) ** 0.5)
config = NequIPConfig(
    species=species,
    r_max=4.0,
    lmax=1,
    num_features=16,
    num_layers=2,
    energy_shifts=tuple(shifts[z] for z in species),
    energy_scales=scale,
)
model = NequIP(config)
print(
    f"NequIP lmax={config.lmax}, {config.num_layers} layers, {config.num_features} features, "
    f"{sum(p.numel() for p in model.parameters())} parameters"
)

train_loader = make_loader(
    AtomsDataset(parts.train, config.r_max), batch_size=10, shuffle=True, seed=0
)
test_loader = make_loader(AtomsDataset(parts.test, config.r_max), batch_size=50)


def mae(model, loader):
    """(energy MAE meV/atom, force MAE meV/Å) over a loader."""
    e_err, f_err, n_struct, n_comp = 0.0, 0.0, 0, 0
    for graph, targets in loader:
        out = predict(model, graph, forces=True)
        e_err += ((out.energy - targets.energy).abs() / graph.num_atoms).sum().item()
        f_err += (out.forces - targets.forces).abs().sum().item()
        n_struct += graph.num_graphs
        n_comp += targets.forces.numel()
    return 1000 * e_err / n_struct, 1000 * f_err / n_comp


e0, f0 = mae(model, test_loader)
print(f"before training (shifts only): energy MAE {e0:.1f} meV/atom, force MAE {f0:.0f} meV/Å")

optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
start, epoch, last_print = time.perf_counter(), 0, 0.0
while time.perf_counter() - start < 60 * args.minutes:
    epoch += 1
    for graph, targets in train_loader:
        out = predict(model, graph, forces=True, training=True)
        loss_e = (((out.energy - targets.energy) / graph.num_atoms) ** 2).mean()
        loss_f = ((out.forces - targets.forces) ** 2).mean()
        loss = loss_e + loss_f  # per-atom energy and force components, both in eV² units
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if time.perf_counter() - last_print > 15:
        last_print = time.perf_counter()
        print(f"  epoch {epoch:3d}  {time.perf_counter() - start:5.0f} s  loss {loss.item():.4f}")

e1, f1 = mae(model, test_loader)
print(
    f"after {epoch} epochs: energy MAE {e1:.1f} meV/atom, force MAE {f1:.0f} meV/Å "
    f"(test set, {len(parts.test)} frames)"
)

# save, reload (safetensors, no pickle) and check the reloaded model gives the same numbers
path = args.out / "nequip-ethanol.safetensors"
save_model(model, path)
e2, f2 = mae(load_model(path), test_loader)
print(f"saved to {path}; reloaded model: energy MAE {e2:.1f} meV/atom, force MAE {f2:.0f} meV/Å")
assert abs(e2 - e1) < 1e-3 and abs(f2 - f1) < 1e-3

# forces of the trained model rotate with the molecule: F(R x) = R F(x)
graph, _ = next(iter(test_loader))
graph = graph.to(dtype=torch.float64)
model64 = model.to(torch.float64)
R = rand_matrix(dtype=torch.float64)
f_rot = predict(model64, graph.deformed(graph.positions @ R.T, torch.zeros_like(graph.cell))).forces
f_ref = predict(model64, graph).forces @ R.T
print(
    f"rotation equivariance of the forces: max |F(Rx) − R F(x)| = {(f_rot - f_ref).abs().max():.1e} eV/Å"
)

# parity plot of the test-set forces
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

model = model.to(torch.float32)
pred, ref = [], []
for graph, targets in test_loader:
    pred.append(predict(model, graph).forces.detach().flatten())
    ref.append(targets.forces.flatten())
pred, ref = torch.cat(pred), torch.cat(ref)
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.scatter(ref, pred, s=2, alpha=0.4)
lim = float(ref.abs().max()) * 1.05
ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
ax.set(
    xlabel="GFN2-xTB force (eV/Å)",
    ylabel="NequIP force (eV/Å)",
    title=f"ethanol test set, MAE {f1:.0f} meV/Å",
)
fig.tight_layout()
fig.savefig(args.out / "force_parity.png", dpi=120)
print(f"parity plot: {args.out / 'force_parity.png'}")
