"""Embedding PCA: the numbers are a PCA, the plots and Ω images are written and not blank."""

import csv
import json

import matplotlib
import matplotlib.image
import numpy as np
import pytest
import torch
from ase.build import molecule

from euclidnn.cli.__main__ import main
from euclidnn.data import Structure
from euclidnn.interpret import (
    embedding_pca,
    periodic_group,
    periodic_period,
    potential_map,
    species_embeddings,
    write_embedding_pca,
    write_potential_map,
)
from euclidnn.models import (
    NequIP,
    NequIPConfig,
    SchNet,
    SchNetConfig,
    TensorHead,
    save_model,
)

SPECIES = (1, 3, 6, 7, 8, 9, 11, 16, 17)


def test_periodic_table_positions():
    expected = {1: (1, 1), 3: (1, 2), 5: (13, 2), 9: (17, 2), 14: (14, 3), 19: (1, 4)}
    expected |= {31: (13, 4), 35: (17, 4), 50: (14, 5), 53: (17, 5), 57: (3, 6), 71: (3, 6)}
    expected |= {72: (4, 6), 86: (18, 6), 87: (1, 7)}
    for z, (group, period) in expected.items():
        assert (periodic_group(z), periodic_period(z)) == (group, period), z
    with pytest.raises(ValueError, match="1..118"):
        periodic_group(0)


def test_pca_of_a_planar_table_keeps_every_distance():
    model = SchNet(SchNetConfig(species=SPECIES, num_features=12))
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(len(SPECIES), 2)) @ rng.normal(size=(2, 12)) + rng.normal(size=12)
    with torch.no_grad():
        model.embedding.weight.copy_(torch.tensor(plane))
    pca = embedding_pca(model)
    assert pca.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-6)
    assert pca.explained_variance_ratio[0] >= pca.explained_variance_ratio[1]
    original = np.linalg.norm(plane[:, None] - plane[None], axis=-1)
    projected = np.linalg.norm(pca.components[:, None] - pca.components[None], axis=-1)
    assert np.allclose(original, projected, atol=1e-4)
    assert pca.groups[SPECIES.index(17)] == 17 and pca.periods[SPECIES.index(11)] == 3


def test_embeddings_of_every_model_kind():
    trunk = NequIP(NequIPConfig(species=(1, 6, 8), num_features=4, num_layers=2, lmax=1))
    for model in (trunk, TensorHead(trunk, "1o")):
        species, table = species_embeddings(model)
        assert species == (1, 6, 8) and table.shape == (3, 4)
        assert np.array_equal(table, trunk.embedding.weight.detach().double().numpy())
    with pytest.raises(TypeError, match="embedding"):
        species_embeddings(torch.nn.Linear(2, 2))


def _not_blank(path) -> float:
    image = matplotlib.image.imread(path)
    return float(image[..., :3].std())


def test_plots_and_numbers_are_written(tmp_path, monkeypatch):
    def no_backend_switch(*args, **kwargs):
        raise AssertionError("library code must not choose matplotlib's backend")

    monkeypatch.setattr(matplotlib, "use", no_backend_switch)
    model = SchNet(SchNetConfig(species=SPECIES, num_features=8))
    paths = write_embedding_pca(embedding_pca(model), tmp_path)
    assert [p.name for p in paths] == [
        "embeddings_pca.png",
        "embeddings_pca.csv",
        "embeddings_pca.json",
    ]
    assert _not_blank(paths[0]) > 0.05
    rows = list(csv.DictReader(paths[1].open()))
    assert [r["symbol"] for r in rows] == ["H", "Li", "C", "N", "O", "F", "Na", "S", "Cl"]
    summary = json.loads(paths[2].read_text())
    assert 0 < sum(summary["explained_variance_ratio"]) <= 1 + 1e-9
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temps

    propane = Structure.from_ase(molecule("C3H8"))
    for kind in ("surface", "plane"):
        result = potential_map(model, propane, 6, kind, resolution=12, spacing=0.25)
        assert result.omega.std() > 1e-4
        png, table, numbers = write_potential_map(result, tmp_path, f"omega-{kind}")
        assert _not_blank(png) > 0.05
        assert len(list(csv.reader(table.open()))) == 1 + len(result.omega)
        assert json.loads(numbers.read_text())["kind"] == kind
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_cli_interpret(tmp_path, capsys):
    model = SchNet(SchNetConfig(species=(1, 6, 7), num_features=8, r_max=4.0))
    save_model(model, tmp_path / "model.safetensors")
    path = str(tmp_path / "model.safetensors")
    assert main(["interpret", "embeddings", path, "--out", str(tmp_path / "e")]) == 0
    assert (tmp_path / "e" / "embeddings_pca.png").is_file()
    assert "explained variance" in capsys.readouterr().out
    command = ["interpret", "potential", path, "CH4", "--probe", "C", "--resolution", "8"]
    assert main([*command, "--out", str(tmp_path / "p")]) == 0
    for suffix in ("png", "csv", "json"):
        assert (tmp_path / "p" / f"potential-CH4-C.{suffix}").is_file()
    capsys.readouterr()
    assert main([*command[:4], "--probe", "O", "--out", str(tmp_path / "q")]) == 2
    assert "knows only atomic numbers" in capsys.readouterr().err
    assert main([*command[:4], "--probe", "Qx", "--out", str(tmp_path / "q")]) == 2
