"""Symmetry breaking: the loss floor, stabilizers, the order-parameter search and its examples."""

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from euclidnn.data import Graph, Structure
from euclidnn.symmetry import (
    BreakingModel,
    OrderParameterConfig,
    Symmetry,
    learn_order_parameter,
    loss_floor,
    point_group,
    point_group_operations,
    project_atoms,
    stabilizer,
)

EXAMPLES = Path(__file__).parents[2] / "examples" / "symmetry_breaking"
SQUARE = Atoms("C4", [[1, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]])


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _group(name: str) -> Symmetry:
    ops = point_group_operations(name)
    return Symmetry(name, ops, np.zeros((len(ops), 0), int), np.zeros(3), np.zeros((len(ops), 3)))


def test_loss_floor_of_square_to_rectangle_is_everything():
    target = torch.tensor(SQUARE.positions * [0.2, -0.2, 0.0])
    floor = loss_floor(target, "1o", point_group(SQUARE))
    assert floor.floor == pytest.approx(float(target.pow(2).mean()))
    assert floor.allowed.abs().max() < 1e-12


def test_loss_floor_keeps_symmetric_targets():
    """A breathing of the square (A1g) and the output of an equivariant model are allowed."""
    group = point_group(SQUARE)
    breathing = torch.tensor(SQUARE.positions * 0.1)
    assert loss_floor(breathing, "1o", group).floor < 1e-30
    model = BreakingModel([6], "0e", "1o + 2e", OrderParameterConfig()).double()
    graph = Graph.from_ase(SQUARE, r_max=3.0, dtype=torch.float64)
    y = model(graph, torch.zeros(4, 1, dtype=torch.float64)).detach()
    assert (project_atoms(y, "1o + 2e", group) - y).abs().max() < 1e-12
    assert loss_floor(y, "1o + 2e", group).floor < 1e-28


def test_loss_floor_per_structure():
    """A dipole along x for water (C2 axis along z) is entirely forbidden; along z allowed."""
    group = point_group(molecule("H2O"))
    assert loss_floor(torch.tensor([1.0, 0, 0]), "1o", group).floor == pytest.approx(1 / 3)
    assert loss_floor(torch.tensor([0.0, 0, 1]), "1o", group).floor < 1e-30


def test_stabilizers():
    d4h = _group("D4h")
    assert stabilizer(torch.tensor([[0.0, 0, 1]]), "1e", d4h).name == "C4h"  # axial vector along z
    assert stabilizer(torch.tensor([[0.0, 0, 1]]), "1o", d4h).name == "C4v"  # polar vector along z
    assert stabilizer(torch.tensor([[1.0]]), "0o", d4h).name == "D4"  # pseudoscalar: chirality
    assert stabilizer(torch.tensor([[1.0, 0, 0]]), "1o", d4h).name == "C2v"
    # per site: two atoms with opposite z vectors on a square's diagonal
    group = point_group(SQUARE)
    vectors = torch.tensor([[0.0, 0, 1], [0, 0, -1]])
    assert stabilizer(vectors, "1o", group, sites=np.array([0, -1, 1, -1])).name == "C2h"


def test_fit_restores_the_thread_count():
    square = Structure.from_ase(SQUARE)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        config = OrderParameterConfig(irreps="2e", steps=2, num_threads=1)
        learn_order_parameter(square, torch.zeros(4, 3), config=config)
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError):
            learn_order_parameter(square, torch.zeros(4, 5), config=config)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_fit_leaves_global_state_alone():
    """The seed goes to a generator of the fit's own: torch's global random state and its
    thread count are the same afterwards, and the same seed gives the same result."""
    square = Structure.from_ase(SQUARE)
    target = torch.tensor(square.positions * [0.2, -0.2, 0.0])
    rng_state = torch.get_rng_state()
    threads = torch.get_num_threads()
    config = OrderParameterConfig(irreps="0e + 2e", steps=20, num_threads=threads % 2 + 1)
    first = learn_order_parameter(square, target, config=config)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert torch.get_num_threads() == threads
    torch.manual_seed(123)  # a different global state must not change the fit
    again = learn_order_parameter(square, target, config=config)
    assert torch.equal(first.order_parameter, again.order_parameter)
    assert first.history == again.history
    other = learn_order_parameter(square, target, config=replace(config, seed=1))
    assert not torch.equal(first.order_parameter, other.order_parameter)


def test_breaking_model_draws_from_its_generator():
    config = OrderParameterConfig()
    rng_state = torch.get_rng_state()
    a, b = (
        BreakingModel([6], "0e", "1o", config, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    )
    assert torch.equal(torch.get_rng_state(), rng_state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    bound = 1 / config.num_basis**0.5  # PyTorch's default Linear initialisation
    assert 0 < a.radial[0].weight.abs().max() <= bound


def test_input_errors_name_the_field():
    square = Structure.from_ase(SQUARE)
    target = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="sites"):
        learn_order_parameter(square, target, sites=[0, 1])
    with pytest.raises(ValueError, match="mask"):
        learn_order_parameter(square, target, mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="target"):
        learn_order_parameter(square, torch.zeros(4, 5))


def test_square_to_rectangle_example(tmp_path):
    """Reduced size: the order parameter is B1g of D4h and the square maps onto the rectangle."""
    result = _example("square_to_rectangle").main(steps=400, out=tmp_path)
    assert result["subgroup"] == "D2h"
    assert result["b1g_error"] < 1e-2
    # within 2 % of the 0.2 Å displacements (at 400 steps the deviation ranges over 5e-4 to
    # 1.7e-3 Å with the seed; without an order parameter the model misses them entirely)
    assert result["deviation"] < 0.02 * 0.2
    norms = result["norms"]
    breaking = norms["1x2e"] + norms["1x4e"]
    assert breaking > 0.01 and sum(norms.values()) - breaking - norms["1x3e"] < 1e-3 * breaking
    assert (tmp_path / "square_to_rectangle.png").stat().st_size > 20_000


def test_perovskite_example(tmp_path):
    """Reduced size: a pseudovector (1e) per Ti; Pnma (62) free, Imma (74) constrained."""
    result = _example("perovskite_tilts").main(steps=300, out=tmp_path)
    for label, number in (("free", 62), ("y tilt fixed at 0", 74)):
        norms = result[label]["norms"]
        assert result[label]["number"] == number
        kept, predicted = result[label]["orders"]  # the order parameter's subgroup = spglib's group
        assert kept == predicted
        assert norms["1x1e"] > 0.02
        assert sum(v for k, v in norms.items() if k != "1x1e") < 0.05 * norms["1x1e"]
    assert (tmp_path / "perovskite_tilts.png").stat().st_size > 20_000
