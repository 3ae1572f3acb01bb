"""Fixtures of the evaluation tests."""
import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny tensors gain nothing from threads, and on a busy machine they slow down a lot.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
