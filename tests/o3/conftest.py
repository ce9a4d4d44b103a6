import pytest
import torch


@pytest.fixture
def e3nn_o3():
    """e3nn.o3 (skipped when e3nn is absent), with float64 as the default dtype for the test:
    e3nn builds its generators and Clebsch–Gordan tensors in the default dtype."""
    module = pytest.importorskip("e3nn.o3")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield module
    torch.set_default_dtype(previous)
