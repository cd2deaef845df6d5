"""Shared test helpers. Integration tests need the test stack: `make test` starts it."""

from __future__ import annotations

import time
import uuid
from typing import Callable, TypeVar

T = TypeVar("T")


def unique(prefix: str) -> str:
    """A name no other test (or earlier run) uses: topics, databases, tenants."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def eventually(condition: Callable[[], T], timeout_s: float = 30.0, interval_s: float = 0.1, what: str = "") -> T:
    """Poll until condition() returns something truthy, or fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - reported below if the deadline passes
            last_error = exc
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or condition}; last error: {last_error!r}")
