"""Shared pytest setup: every test starts from the same random state, with Ctrl-C as a
terminal delivers it."""

import random
import signal

import numpy as np
import pytest
import torch

# A suite started in the background of a script (`make test &`) inherits SIGINT ignored, and so
# would every command the Ctrl-C tests start: they would fail for a reason a user never meets.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
