"""SchNet.energy_and_forces (hand-written derivatives, used by predict for inference) against autograd."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk, molecule

import euclidnn.models.schnet
import euclidnn.nn.conv
from euclidnn.data import Graph
from euclidnn.models import SchNet, SchNetConfig, predict


@pytest.mark.parametrize(
    "pair_min,native_min",
    [(10**9, 10**9), (0, 10**9), (0, 0)],
    ids=["per-edge", "pairs", "pairs+kernel"],
)
@pytest.mark.parametrize("periodic", [False, True])
def test_matches_autograd(pair_min, native_min, periodic, monkeypatch):
    monkeypatch.setattr(euclidnn.models.schnet, "PAIR_MIN_EDGES", pair_min)
    monkeypatch.setattr(euclidnn.nn.conv, "NATIVE_MIN_EDGES", native_min)
    torch.manual_seed(0)
    config = SchNetConfig(
        species=(1, 6, 8, 14),
        num_features=16,
        num_basis=12,
        energy_scales=(0.7, 1.1, 0.9, 1.3),
        energy_shifts=(-1.0, -2.0, -3.0, -4.0),
    )
    model = SchNet(config).double()
    structures = (
        [molecule("CH3CH2OH"), bulk("Si") * (2, 1, 1)] if periodic else molecule("CH3CH2OH")
    )
    graph = Graph.from_ase(structures, 5.0, torch.float64)
    reference = predict(model, graph, training=True)  # autograd through forward()
    energy, forces = model.energy_and_forces(graph)
    torch.testing.assert_close(energy, reference.energy, rtol=0, atol=1e-12)
    torch.testing.assert_close(forces, reference.forces, rtol=0, atol=1e-12)
    assert forces.abs().max() > 1e-2  # not vacuous
    fast = predict(model, graph)  # inference goes through energy_and_forces
    assert torch.equal(fast.forces, forces)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-14), (torch.float32, 1e-6)])
def test_radial_kernel_matches_the_pytorch_bases(dtype, tol):
    from euclidnn.nn import cosine_cutoff, gaussian_basis
    from euclidnn.o3 import _native

    if _native.library() is None:
        pytest.skip("no C compiler: the PyTorch formulas run instead")
    r = torch.linspace(0.05, 6.0, 200, dtype=dtype).requires_grad_()  # past r_max = 5
    mu = torch.linspace(0.0, 5.0, 25, dtype=dtype)
    e, de, fc, dfc = _native.schnet_radial(r.detach(), mu, 11.52, 5.0)
    e_ref = gaussian_basis(r, 5.0, 25, gamma=11.52)
    fc_ref = cosine_cutoff(r, 5.0)
    torch.testing.assert_close(e, e_ref.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(fc, fc_ref.detach(), rtol=tol, atol=tol)
    de_ref = torch.stack(
        [torch.autograd.grad(e_ref[:, k].sum(), r, retain_graph=True)[0] for k in range(25)], 1
    )
    (dfc_ref,) = torch.autograd.grad(fc_ref.sum(), r)
    torch.testing.assert_close(de, de_ref, rtol=tol, atol=10 * tol)
    torch.testing.assert_close(dfc, dfc_ref, rtol=tol, atol=tol)
    assert (e[e != 0].abs() >= torch.finfo(dtype).tiny).all()  # no subnormals
