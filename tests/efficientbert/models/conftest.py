"""Model tests run torch single-threaded (tiny models gain nothing from threads on a busy machine), seeded, with the
EffBert Auto registration in place."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from effbert.methods.efficientbert.modeling_effbert import register


@pytest.fixture(autouse=True)
def _single_thread_seeded_registered() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    register()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
