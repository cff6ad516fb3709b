"""Fixtures the test packages share."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: a stacked run is bitwise the same as alone only where
    several threads do not split its reductions by the stack's size."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
