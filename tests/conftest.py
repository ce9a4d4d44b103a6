"""Shared pytest setup: every test starts from the same random state."""

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_rngs():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def _e3nn_module(name):
    """An e3nn module (the test is skipped when e3nn is absent), with float64 as the default
    dtype during the test: e3nn builds its generators and Clebsch–Gordan tensors in the default
    dtype."""
    module = pytest.importorskip(name)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield module
    torch.set_default_dtype(previous)


@pytest.fixture
def e3nn_o3():
    yield from _e3nn_module("e3nn.o3")


@pytest.fixture
def e3nn_nn():
    yield from _e3nn_module("e3nn.nn")
