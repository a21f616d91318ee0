"""`MockRelayBoard`: a relay board in memory. A driver for real hardware (a USB HID relay, a GPIO
expander) implements the same interface and talks to the device instead of a list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

from jumpstarter.driver import Driver, export
from jumpstarter_driver_relay.interface import RelayInterface


@dataclass(kw_only=True)
class MockRelayBoard(RelayInterface, Driver):
    """A simulated relay board; `channels` comes from the exporter config (`config: {channels: 8}`)."""

    channels: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.channels < 1:
            raise ValueError(f"MockRelayBoard config channels: must be at least 1, got {self.channels}")
        self._closed = [False] * self.channels
        self._changed = anyio.Event()

    async def reset(self) -> None:
        """Every session starts with all relays open."""
        self._closed = [False] * self.channels

    def _check(self, channel: int) -> None:
        if not 1 <= channel <= self.channels:
            # a ValueError here is a ValueError in the client too
            raise ValueError(f"channel {channel} does not exist: this board has channels 1 to {self.channels}")

    @export
    async def set(self, channel: int, closed: bool) -> None:
        """Close (True) or open (False) one relay."""
        self._check(channel)
        self._closed[channel - 1] = closed
        self.logger.info("relay %d %s", channel, "closed" if closed else "open")
        self._changed.set()
        self._changed = anyio.Event()

    @export
    async def states(self) -> list[bool]:
        """Every relay's state, channel 1 first (True: closed)."""
        return list(self._closed)

    @export
    async def watch(self, count: int) -> AsyncIterator[dict[str, int | bool]]:
        """The next `count` changes, as they happen."""
        before = list(self._closed)
        seen = 0
        while seen < count:
            await self._changed.wait()
            for index, (old, new) in enumerate(zip(before, self._closed, strict=True)):
                if old != new and seen < count:
                    seen += 1
                    yield {"channel": index + 1, "closed": new}
            before = list(self._closed)
