"""Potentials side by side: euclidnn vs nequip (NequIP), nequip-allegro (Allegro), schnetpack
(SchNet) and mace-torch (MACE, against our NequIP), energy + forces and a training step.

Run with the benchmark environment (``make bench`` builds it):

    .venv-bench/bin/python bench/models.py [--repeats 10] [--quick] [--compile] [--json out.json]

One process, 2 threads, float32, the same hyperparameters on both sides (printed), each row the
median of ``--repeats`` interleaved timings (ours, peer, ours, peer, …) after warm-up; a timing
is the mean of enough calls to last ≥ 30 ms. Inputs (neighbour lists, graphs) are built
outside the timed region, on both sides. Speedup = peer / ours.

Systems: (a) ethanol (9 atoms), (b) aspirin (21 atoms, MMFF geometry), (c) a batch of 32
ethanol molecules, (d) 64 water molecules in a periodic 12.4 Å box (1.0 g/cm³); and one full
training step on (c) and (d): energy + force loss, double backward, Adam step.

MACE runs in its own venv (``make .venv-mace/bin/.installed``; mace-torch 0.3.14 pins e3nn
0.4.4), in the worker process of ``bench/md_mace.py``, which times its own calls (the pipe is
outside the time); its size is ``bench/md.py``'s, matched to our NequIP (32x0e+32x1o, 2
interactions, correlation 3, l_max 3). ``--only`` without ``mace`` needs no MACE venv.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import molecule
from machine import header

warnings.filterwarnings("ignore")
R_MAX = 5.0
TYPES = ["H", "C", "O"]
SPECIES = (1, 6, 8)
NEQUIP = dict(
    num_layers=4,
    num_features=32,
    num_bessels=8,
    radial_mlp_depth=2,
    radial_mlp_width=64,
    avg_num_neighbors=12.0,
    parity=True,
)
ALLEGRO = dict(  # our AllegroConfig's defaults; the peer is set to match (peer_allegro)
    lmax=1,
    num_layers=2,
    num_tensor_features=16,
    latent_dim=64,
    two_body_mlp_depth=2,
    latent_mlp_depth=1,
    edge_energy_width=32,
    num_basis=8,
    avg_num_neighbors=12.0,
)
SCHNET = dict(n_atom_basis=128, n_filters=128, n_interactions=3, n_rbf=25)

ASPIRIN_SYMBOLS = "CCOOCCCCCCCOOHHHHHHHH"
ASPIRIN_POSITIONS = [  # RDKit ETKDG + MMFF94 from the SMILES CC(=O)Oc1ccccc1C(=O)O, Å
    (3.4038, 0.5543, 0.0552),
    (2.0439, 0.1391, 0.5312),
    (1.6894, 0.1441, 1.7031),
    (1.2884, -0.2659, -0.5636),
    (-0.0284, -0.5847, -0.2190),
    (-0.3282, -1.9424, -0.0674),
    (-1.6290, -2.3304, 0.2478),
    (-2.6259, -1.3671, 0.3983),
    (-2.3267, -0.0114, 0.2273),
    (-1.0220, 0.3968, -0.0914),
    (-0.7032, 1.8334, -0.3031),
    (0.3609, 2.3052, -0.6590),
    (-1.7563, 2.6373, -0.0592),
    (3.9239, -0.3054, -0.3741),
    (3.9844, 0.9300, 0.9025),
    (3.3109, 1.3562, -0.6817),
    (0.4490, -2.6922, -0.1857),
    (-1.8659, -3.3836, 0.3782),
    (-3.6405, -1.6701, 0.6470),
    (-3.1244, 0.7190, 0.3429),
    (-1.4037, 3.5378, -0.2188),
]


def water_box(n_side: int = 4, box: float = 12.4, seed: int = 0) -> Atoms:
    """n_side³ randomly oriented water molecules on a cubic grid in a periodic box (Å)."""
    rng = np.random.default_rng(seed)
    atoms = Atoms(cell=[box] * 3, pbc=True)
    spacing = box / n_side
    for idx in np.ndindex(n_side, n_side, n_side):
        w = molecule("H2O")
        w.rotate(rng.uniform(0, 360), rng.normal(size=3))
        w.translate((np.array(idx) + 0.5) * spacing - w.get_center_of_mass())
        atoms += w
    return atoms


def systems() -> dict[str, list[Atoms]]:
    ethanol = molecule("CH3CH2OH")
    aspirin = Atoms(ASPIRIN_SYMBOLS, positions=ASPIRIN_POSITIONS)
    batch = []
    rng = np.random.default_rng(1)
    for _ in range(32):
        e = ethanol.copy()
        e.positions += rng.normal(scale=0.05, size=e.positions.shape)
        batch.append(e)
    return {
        "ethanol": [ethanol],
        "aspirin": [aspirin],
        "ethanol x32": batch,
        "water 64 pbc": [water_box()],
    }


# ---- ours ---------------------------------------------------------------------------------------


def ours_nequip(lmax: int, **config):
    from euclidnn.models import NequIP, NequIPConfig

    n = NEQUIP
    return NequIP(
        NequIPConfig(
            species=SPECIES,
            r_max=R_MAX,
            lmax=lmax,
            num_features=n["num_features"],
            num_layers=n["num_layers"],
            num_basis=n["num_bessels"],
            parity=n["parity"],
            radial_mlp_depth=n["radial_mlp_depth"],
            radial_mlp_width=n["radial_mlp_width"],
            avg_num_neighbors=n["avg_num_neighbors"],
            **config,
        )
    )


def ours_allegro(**config):
    from euclidnn.models import Allegro, AllegroConfig

    return Allegro(AllegroConfig(species=SPECIES, r_max=R_MAX, **ALLEGRO, **config))


def ours_schnet(**config):
    from euclidnn.models import SchNet, SchNetConfig

    s = SCHNET
    return SchNet(
        SchNetConfig(
            species=SPECIES,
            r_max=R_MAX,
            num_features=s["n_atom_basis"],
            num_filters=s["n_filters"],
            num_interactions=s["n_interactions"],
            num_basis=s["n_rbf"],
            **config,
        )
    )


def ours_input(atoms_list):
    from euclidnn.data import Graph

    return Graph.from_ase(
        atoms_list if len(atoms_list) > 1 else atoms_list[0], R_MAX, torch.float32
    )


def ours_step(model, graph):
    from euclidnn.models import predict

    def run():
        p = predict(model, graph)
        return p.energy, p.forces

    return run


def ours_train(model, graph):
    from euclidnn.models import predict

    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    e_ref = torch.zeros(graph.num_graphs)
    f_ref = torch.zeros_like(graph.positions)

    def run():
        p = predict(model, graph, training=True)
        loss = (p.energy - e_ref).pow(2).mean() + (p.forces - f_ref).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


# ---- peers ----------------------------------------------------------------------------------------


def peer_nequip(lmax: int, **options):
    from nequip.model import NequIPGNNModel
    from nequip.utils.global_state import set_global_state

    set_global_state()
    n = dict(NEQUIP)
    model = NequIPGNNModel(
        seed=0,
        model_dtype="float32",
        r_max=R_MAX,
        type_names=TYPES,
        l_max=lmax,
        **{"do_derivatives": False, **n, **options},
    )
    torch.set_default_dtype(torch.float32)  # nequip's global state sets float64
    return model


def peer_allegro(**options):
    """nequip-allegro's ``AllegroModel`` at :data:`ALLEGRO` (as ``bench/md.py`` builds it; MLPs
    without biases on both sides)."""
    from allegro.model import AllegroModel
    from nequip.utils.global_state import set_global_state

    set_global_state()
    a = ALLEGRO
    model = AllegroModel(
        seed=0,
        model_dtype="float32",
        r_max=R_MAX,
        type_names=TYPES,
        l_max=a["lmax"],
        parity=True,
        radial_chemical_embed={
            "_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
            "num_bessels": a["num_basis"],
            "polynomial_cutoff_p": 6,
        },
        scalar_embed_mlp_hidden_layers_depth=a["two_body_mlp_depth"],
        scalar_embed_mlp_hidden_layers_width=a["latent_dim"],
        num_layers=a["num_layers"],
        num_scalar_features=a["latent_dim"],
        num_tensor_features=a["num_tensor_features"],
        allegro_mlp_hidden_layers_depth=a["latent_mlp_depth"],
        allegro_mlp_hidden_layers_width=a["latent_dim"],
        readout_mlp_hidden_layers_depth=1,
        readout_mlp_hidden_layers_width=a["edge_energy_width"],
        avg_num_neighbors=a["avg_num_neighbors"],
        **{"do_derivatives": False, **options},
    )
    torch.set_default_dtype(torch.float32)  # nequip's global state sets float64
    return model


def peer_nequip_input(atoms_list):
    from nequip.data import AtomicDataDict, compute_neighborlist_, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper

    mapper = ChemicalSpeciesToAtomTypeMapper(model_type_names=TYPES)
    frames = [compute_neighborlist_(mapper(from_ase(a)), R_MAX) for a in atoms_list]
    data = AtomicDataDict.batched_from_list(frames)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in data.items()}


def _nequip_energy_forces(model, data, create_graph: bool):
    data = dict(data)
    pos = data["pos"].detach().requires_grad_(True)
    data["pos"] = pos
    energy = model(data)["total_energy"]
    (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=create_graph)
    return energy, -grad


def peer_nequip_step(model, data):
    return lambda: _nequip_energy_forces(model, data, create_graph=False)


def peer_nequip_train(model, data):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    n_graphs = int(data["num_atoms"].shape[0])
    e_ref, f_ref = torch.zeros(n_graphs, 1), torch.zeros_like(data["pos"])

    def run():
        energy, forces = _nequip_energy_forces(model, data, create_graph=True)
        loss = (energy - e_ref).pow(2).mean() + (forces - f_ref).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def peer_schnet():
    import schnetpack as spk

    s = SCHNET
    rep = spk.representation.SchNet(
        n_atom_basis=s["n_atom_basis"],
        n_filters=s["n_filters"],
        n_interactions=s["n_interactions"],
        radial_basis=spk.nn.GaussianRBF(n_rbf=s["n_rbf"], cutoff=R_MAX),
        cutoff_fn=spk.nn.CosineCutoff(R_MAX),
    )
    model = spk.model.NeuralNetworkPotential(
        representation=rep,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[
            spk.atomistic.Atomwise(n_in=s["n_atom_basis"], output_key="energy"),
            spk.atomistic.Forces(energy_key="energy", force_key="forces"),
        ],
    )
    return model.float()


def peer_schnet_input(atoms_list):
    import schnetpack.transform as trn
    from schnetpack.interfaces import AtomsConverter

    conv = AtomsConverter(neighbor_list=trn.MatScipyNeighborList(cutoff=R_MAX), dtype=torch.float32)
    return conv(atoms_list)


def peer_schnet_step(model, inputs):
    model.eval()

    def run():
        out = model(dict(inputs))
        return out["energy"], out["forces"]

    return run


def peer_schnet_train(model, inputs):
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    n_graphs = int(inputs["_n_atoms"].shape[0])
    e_ref, f_ref = torch.zeros(n_graphs), torch.zeros_like(inputs["_positions"])

    def run():
        out = model(dict(inputs))
        loss = (out["energy"] - e_ref).pow(2).mean() + (out["forces"] - f_ref).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


# ---- timing -------------------------------------------------------------------------------------


def _time(fn, n: int) -> float:
    if hasattr(fn, "timed"):  # MACE's worker process times its own calls
        return fn.timed(n)
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e3


def compare(ours, peer, repeats: int, warmup: int = 2) -> tuple[float, float]:
    """Median ms per call of ours and peer, interleaved, after warm-up."""
    for _ in range(warmup):
        t_ours, t_peer = _time(ours, 1), _time(peer, 1)
    n_ours = max(1, int(30.0 / max(t_ours, 1e-3)))
    n_peer = max(1, int(30.0 / max(t_peer, 1e-3)))
    a, b = [], []
    for _ in range(repeats):
        a.append(_time(ours, n_ours))
        b.append(_time(peer, n_peer))
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="systems (a) and (c) only")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile our models (dynamic shapes)"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated: nequip-l1,nequip-l2,allegro,schnet,mace"
    )
    parser.add_argument(
        "--systems", default="", help="comma-separated systems (default all), e.g. ethanol,aspirin"
    )
    parser.add_argument("--json", default=None, help="write the rows as JSON to this path")
    parser.add_argument(
        "--mace-python",
        default=str(Path(__file__).parent.parent / ".venv-mace/bin/python"),
        help="the Python of MACE's venv (default: .venv-mace of this checkout)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(header(), flush=True)
    torch.manual_seed(0)

    import allegro
    import e3nn
    import nequip
    import schnetpack

    print(
        f"torch {torch.__version__}, e3nn {e3nn.__version__}, nequip {nequip.__version__}, "
        f"allegro {allegro.__version__}, "
        f"schnetpack {schnetpack.__version__}, threads {torch.get_num_threads()}, float32, r_max {R_MAX} Å"
    )
    print(f"NequIP: {NEQUIP}")
    print(f"Allegro: {ALLEGRO}")
    print(f"SchNet: {SCHNET}")
    data = systems()
    if args.quick:
        data = {k: v for k, v in data.items() if k in ("ethanol", "ethanol x32")}
    if args.systems:
        data = {k: v for k, v in data.items() if k in args.systems.split(",")}
    families = {
        "nequip-l1": (
            lambda: ours_nequip(1),
            lambda: peer_nequip(1),
            peer_nequip_input,
            peer_nequip_step,
            peer_nequip_train,
            "nequip",
        ),
        "nequip-l2": (
            lambda: ours_nequip(2),
            lambda: peer_nequip(2),
            peer_nequip_input,
            peer_nequip_step,
            peer_nequip_train,
            "nequip",
        ),
        "allegro": (
            ours_allegro,
            peer_allegro,
            peer_nequip_input,
            peer_nequip_step,
            peer_nequip_train,
            "allegro",
        ),
        "schnet": (
            ours_schnet,
            peer_schnet,
            peer_schnet_input,
            peer_schnet_step,
            peer_schnet_train,
            "schnetpack",
        ),
    }
    from md import MACE
    from md_mace import Worker

    names = {id(v): k for k, v in data.items()}  # MACE's worker builds the systems itself
    families["mace"] = (
        lambda: ours_nequip(1),
        lambda: Worker(Path(args.mace_python), args.threads, MACE["hidden_irreps"]),
        lambda atoms_list: names[id(atoms_list)],
        lambda worker, system: worker.timed(system, "step"),
        lambda worker, system: worker.timed(system, "train"),
        "mace",
    )
    if args.only:
        families = {k: v for k, v in families.items() if k in args.only.split(",")}
    rows = []
    print(f"\n{'case':34s} {'ours ms':>9s} {'peer':>11s} {'peer ms':>9s} {'speedup':>8s}")
    for name, (
        make_ours,
        make_peer,
        peer_input,
        peer_step,
        peer_train,
        peer_name,
    ) in families.items():
        peer_model = make_peer()
        if name == "mace":
            v = peer_model.versions
            print(f"MACE {v['mace']} (e3nn {v['e3nn']}): {MACE}, ours NequIP l1", flush=True)
        torch.set_default_dtype(torch.float32)
        ours_model = make_ours()
        fwd = torch.compile(ours_model, dynamic=True) if args.compile else ours_model
        cases = [(f"{name} {k}", v, ours_step, peer_step) for k, v in data.items()]
        cases += [
            (f"{name} train step {k}", data[k], ours_train, peer_train)
            for k in ("ethanol x32", "water 64 pbc")
            if k in data
        ]
        for case, atoms_list, make_ours_fn, make_peer_fn in cases:
            ours_fn = (
                make_ours_fn(fwd, ours_input(atoms_list))
                if make_ours_fn is ours_step
                else make_ours_fn(ours_model, ours_input(atoms_list))
            )
            if fwd is not ours_model and make_ours_fn is ours_step:
                try:
                    ours_fn()  # compiles
                except Exception as err:  # Inductor 2.13 fails on some scatters: say so, time eager
                    print(
                        f"  torch.compile failed ({type(err).__name__}: {str(err).strip().splitlines()[0][:120]}); "
                        "timing eager",
                        flush=True,
                    )
                    fwd = ours_model
                    ours_fn = make_ours_fn(ours_model, ours_input(atoms_list))
            peer_fn = make_peer_fn(peer_model, peer_input(atoms_list))
            t_ours, t_peer = compare(ours_fn, peer_fn, args.repeats)
            row = {
                "case": case,
                "ours_ms": round(t_ours, 3),
                "peer": peer_name,
                "peer_ms": round(t_peer, 3),
                "speedup": round(t_peer / t_ours, 2),
            }
            rows.append(row)
            print(
                f"{case:34s} {t_ours:9.2f} {peer_name:>11s} {t_peer:9.2f} {t_peer / t_ours:7.2f}x",
                flush=True,
            )
        if name == "mace":
            peer_model.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
