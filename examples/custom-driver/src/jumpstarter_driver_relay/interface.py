"""What every relay board driver offers, whatever the hardware behind it."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import AsyncIterator
from typing import ClassVar


class RelayInterface(metaclass=ABCMeta):
    """A bank of numbered relays (1..channels), each open or closed."""

    driver_type: ClassVar[str] = "other"

    @classmethod
    def client(cls) -> str:
        """The client class every relay board gets, whichever driver implements the interface."""
        return "jumpstarter_driver_relay.client.RelayClient"

    @abstractmethod
    async def set(self, channel: int, closed: bool) -> None:
        """Close (True) or open (False) one relay."""

    @abstractmethod
    async def states(self) -> list[bool]:
        """Every relay's state, channel 1 first (True: closed)."""

    @abstractmethod
    def watch(self, count: int) -> AsyncIterator[dict[str, int | bool]]:
        """The next `count` changes, as they happen: {"channel": 2, "closed": True}."""
