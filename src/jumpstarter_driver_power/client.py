"""`PowerClient`: `on()`, `off()`, `cycle()`, `read()` and `j <name> on|off|cycle|read`."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jumpstarter.client import DriverClient
from jumpstarter_driver_power.common import HttpPowerError, PowerReading

if TYPE_CHECKING:
    import click

__all__ = ["HttpPowerError", "PowerClient", "PowerReading", "VirtualPowerClient"]


def _reading(item: Any) -> PowerReading:
    # our exporters send the model itself; upstream ones a plain {"voltage": ..., "current": ...}
    return item if isinstance(item, PowerReading) else PowerReading.model_validate(item)


def format_reading(reading: PowerReading) -> str:
    """One line for a terminal: `5.000 V  2.000 A  10.000 VA`."""
    return f"{reading.voltage:.3f} V  {reading.current:.3f} A  {reading.apparent_power:.3f} VA"


@dataclass(kw_only=True)
class PowerClient(DriverClient):
    """Client of any `PowerInterface` driver."""

    def on(self) -> None:
        """Switch the power on."""
        self.call("on")

    def off(self) -> None:
        """Switch the power off."""
        self.call("off")

    def cycle(self, wait: float = 2) -> None:
        """Switch off, wait `wait` seconds, switch on."""
        self.logger.info("power cycle: off, %s s, on", wait)
        self.off()
        time.sleep(wait)
        self.on()

    def read(self) -> Generator[PowerReading, None, None]:
        """Readings as the driver produces them (stop iterating to stop a continuous stream)."""
        for item in self.streamingcall("read"):
            yield _reading(item)

    async def on_async(self) -> None:
        """`on` for async code."""
        await self.call_async("on")

    async def off_async(self) -> None:
        """`off` for async code."""
        await self.call_async("off")

    def cli(self) -> click.Group:
        """`on`, `off`, `cycle [--wait S]`, `read [--count N]`."""
        import click

        @click.group()
        def base() -> None:
            """Generic power"""

        @base.command()
        def on() -> None:
            """Power on"""
            self.on()

        @base.command()
        def off() -> None:
            """Power off"""
            self.off()

        @base.command()
        @click.option("--wait", "-w", type=click.FloatRange(min=0), default=2, show_default=True,
                      help="Seconds between off and on")
        def cycle(wait: float) -> None:
            """Power cycle: off, wait, on"""
            click.echo(f"Power cycling with {wait:g} seconds wait time...")
            self.cycle(wait)

        @base.command()
        @click.option("--count", "-n", type=click.IntRange(min=1), default=None,
                      help="Stop after N readings (default: as many as the driver sends)")
        def read(count: int | None) -> None:
            """Print power readings"""
            readings = self.read()
            try:
                for index, reading in enumerate(readings, start=1):
                    click.echo(format_reading(reading))
                    if count is not None and index >= count:
                        break
            finally:
                readings.close()

        return base


@dataclass(kw_only=True)
class VirtualPowerClient(PowerClient):
    """Client of a `VirtualPowerInterface` driver: `off(destroy=True)` also discards the instance."""

    def off(self, destroy: bool = False) -> None:
        """Switch the power off; with `destroy`, also discard the virtual device."""
        self.call("off", destroy)

    def cli(self) -> click.Group:
        """`PowerClient.cli()` with `off --destroy`."""
        import click

        group = super().cli()

        @group.command(name="off")
        @click.option("--destroy", is_flag=True, help="Destroy the instance after powering it off")
        def off(destroy: bool) -> None:
            """Power off"""
            self.off(destroy)

        return group
