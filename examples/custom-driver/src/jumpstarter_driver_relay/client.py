"""`RelayClient`: a friendly Python API over the exported calls, and the `j relay ...` commands."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jumpstarter.client import DriverClient

if TYPE_CHECKING:
    import click


@dataclass(kw_only=True)
class RelayClient(DriverClient):
    """Client of any `RelayInterface` driver."""

    def close(self, channel: int) -> None:
        """Close a relay (the circuit conducts)."""
        self.call("set", channel, True)

    def open(self, channel: int) -> None:
        """Open a relay."""
        self.call("set", channel, False)

    def states(self) -> list[bool]:
        """Every relay's state, channel 1 first."""
        return list(self.call("states"))

    def pulse(self, channel: int, seconds: float = 0.5) -> None:
        """Close a relay for `seconds`, then open it: a button press. Built from the exported calls,
        so every relay driver has it."""
        self.close(channel)
        try:
            time.sleep(seconds)
        finally:
            self.open(channel)

    def watch(self, count: int) -> Iterator[dict[str, Any]]:
        """The next `count` changes as they happen."""
        yield from self.streamingcall("watch", count)

    def cli(self) -> click.Group:
        """`j relay close N`, `open N`, `pulse N [--seconds S]`, `status`."""
        import click  # only `j` needs click: importing it here keeps the client light

        @click.group()
        def relay() -> None:
            """Relay board"""

        @relay.command(name="close")
        @click.argument("channel", type=int)
        def close_(channel: int) -> None:
            """Close relay CHANNEL"""
            self.close(channel)

        @relay.command(name="open")
        @click.argument("channel", type=int)
        def open_(channel: int) -> None:
            """Open relay CHANNEL"""
            self.open(channel)

        @relay.command()
        @click.argument("channel", type=int)
        @click.option("--seconds", "-s", type=click.FloatRange(min=0), default=0.5, show_default=True)
        def pulse(channel: int, seconds: float) -> None:
            """Close relay CHANNEL for a moment, then open it"""
            self.pulse(channel, seconds)

        @relay.command()
        def status() -> None:
            """Print every relay's state"""
            for number, closed in enumerate(self.states(), start=1):
                click.echo(f"{number}: {'closed' if closed else 'open'}")

        return relay
