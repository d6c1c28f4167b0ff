"""Fixtures shared by the test modules."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run on one thread: with two, every small op (a GRU time step) waits at an
    OpenMP barrier, which on a busy 2-core machine costs a scheduler slice (measured: 0.26 s vs
    0.6 ms per forward of a tiny GRU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
