"""Distillation tests run torch single-threaded: tiny models gain nothing from threads, and on a busy machine
oversubscribed intra-op threads make them 10-20x slower."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
