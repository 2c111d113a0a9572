import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is faster on 2 cores shared with other processes."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
