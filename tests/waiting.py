"""Bounded polling for things the gateway does in the background."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(probe: Callable[[], T | None], *, timeout: float = 10.0,
          what: str = "condition") -> T:
    """Return probe()'s first truthy result, polling; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached after {timeout} s (last: {result!r})")
        time.sleep(0.05)
