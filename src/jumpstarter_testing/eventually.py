"""`eventually()`: retry an assertion until it holds or time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def eventually(fn: Callable[[], Any], *, timeout: float = 5, interval: float = 0.05) -> Any:
    """Call `fn` until it returns without raising; after `timeout` seconds its last error is raised.
    Returns what `fn` returned."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() >= deadline:
                raise
        time.sleep(interval)
