import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every model test runs single-threaded (tests/conftest.py)."""
    yield
