"""Drivers used by the integration tests; child processes import this module through PYTHONPATH
(exporter configs name `drivers_for_tests.Lamp`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jumpstarter.driver import Driver, export
from jumpstarter.errors import DriverError


class LampBroken(DriverError):
    """The lamp cannot do what it was asked."""


@dataclass(kw_only=True)
class Lamp(Driver):
    """A dimmable lamp; `closed_marker` names a file written when the exporter closes the driver."""

    closed_marker: str = ""
    max_level: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_level <= 0:
            raise ValueError(f"max_level must be positive, got {self.max_level}")
        self.level = 0

    def reset(self) -> None:
        self.level = 0

    def close(self) -> None:
        if self.closed_marker:
            Path(self.closed_marker).write_text("closed\n")

    @export
    def on(self, level: int = 100) -> str:
        """Switch on at `level` percent."""
        if level > self.max_level:
            raise LampBroken(f"level {level} is above the maximum of {self.max_level}")
        self.level = level
        return f"on at {level}%"

    @export
    def off(self) -> str:
        """Switch off."""
        self.level = 0
        return "off"

    @export
    def status(self) -> int:
        """The current level."""
        return self.level

    @export
    def rename(self, name: str, suffix: str = "") -> str:
        """Echo a label (checks string arguments and options of generated `j` commands)."""
        return f"{name}{suffix}"

    @export
    def blink(self, times: int, delay: float = 0.0) -> Iterator[str]:
        """Yield one line per blink."""
        for i in range(times):
            if delay:
                time.sleep(delay)
            yield f"blink {i + 1}"
