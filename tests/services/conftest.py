"""Fixtures of the services tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test's tiny pipelines on one CPU thread: they gain nothing from a second, and on a busy 2-core
    machine OpenMP's spinning second thread makes them several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
