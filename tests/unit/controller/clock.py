"""A clock the controller tests move by hand (`clock.now += 30`)."""

from __future__ import annotations


class Clock:
    """Seconds since the epoch, starting at 1000, advanced only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
