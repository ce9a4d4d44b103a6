import pytest
import torch


@pytest.fixture
def e3nn_nn():
    """e3nn.nn (skipped when e3nn is absent), with float64 as the default dtype for the test."""
    module = pytest.importorskip("e3nn.nn")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield module
    torch.set_default_dtype(previous)
