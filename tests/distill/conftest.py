"""Distillation tests run torch single-threaded (the shared ``single_torch_thread`` fixture of tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(single_torch_thread: None) -> None:
    """Every test in this folder uses the shared single-thread fixture."""
