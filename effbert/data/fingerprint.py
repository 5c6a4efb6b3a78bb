"""Deterministic ``datasets`` fingerprints: the saved Arrow bytes of a prepared split depend only on its inputs."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(*parts: Any) -> str:
    """A deterministic datasets fingerprint from JSON-serialisable parts (keeps saved Arrow bytes stable)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
