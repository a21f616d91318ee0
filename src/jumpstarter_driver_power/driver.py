"""The power interface and the mock supplies implementing it.

`HttpPower` (HTTP-controlled PDUs and smart plugs) lives in `jumpstarter_driver_power.http` and is
importable from here too.
"""

from __future__ import annotations

import itertools
import time
from abc import ABCMeta, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio

from jumpstarter.driver import Driver, export
from jumpstarter_driver_power.common import PowerReading

__all__ = ["MockPower", "PowerInterface", "PowerReading", "SyncMockPower", "VirtualPowerInterface"]


class PowerInterface(metaclass=ABCMeta):
    """A switchable, optionally metered, power supply: `on`, `off` and a stream of readings."""

    driver_type: ClassVar[str] = "power"

    @classmethod
    def client(cls) -> str:
        """Dotted path of `PowerClient`."""
        return "jumpstarter_driver_power.client.PowerClient"

    @abstractmethod
    def on(self) -> Any:
        """Switch the power on."""

    @abstractmethod
    def off(self) -> Any:
        """Switch the power off."""

    @abstractmethod
    def read(self) -> Any:
        """Yield `PowerReading`s."""


class VirtualPowerInterface(PowerInterface):
    """Power of a virtual device, whose `off` can also destroy the instance."""

    @classmethod
    def client(cls) -> str:
        """Dotted path of `VirtualPowerClient`."""
        return "jumpstarter_driver_power.client.VirtualPowerClient"

    @abstractmethod
    def off(self, destroy: bool = False) -> Any:
        """Switch the power off; with `destroy`, also discard the virtual device."""


@dataclass(kw_only=True)
class _SimulatedSupply(Driver):
    """Configuration and state shared by the mock supplies.

    A read simulates a supply being sampled as it comes up: the first reading is 0 V / 0 A, the
    following ones the nominal `voltage` and `current`. `samples` readings are produced per
    `read()` (0: endlessly), `interval` seconds apart."""

    voltage: float = 5.0
    current: float = 2.0
    samples: int = 2
    interval: float = 0.0
    #: True once switched on, False once switched off, None before either.
    state: bool | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        for key in ("voltage", "current", "interval"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} config {key}: expected a number, got {value!r}")
            setattr(self, key, float(value))
        if self.interval < 0:
            raise ValueError(f"{name} config interval: must not be negative, got {self.interval}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 0:
            raise ValueError(f"{name} config samples: expected a count >= 0 (0: endless), got {self.samples!r}")

    def _switch(self, state: bool) -> None:
        self.state = state
        self.logger.info("power %s", "on" if state else "off")

    def _reading(self, index: int) -> PowerReading:
        if index == 0:
            return PowerReading(voltage=0.0, current=0.0)
        return PowerReading(voltage=self.voltage, current=self.current)

    def _indices(self) -> Iterable[int]:
        return itertools.count() if self.samples == 0 else range(self.samples)


@dataclass(kw_only=True)
class MockPower(PowerInterface, _SimulatedSupply):
    """A simulated power supply with async methods: remembers its state, streams simulated readings.

    >>> with serve(MockPower()) as power:
    ...     power.on()
    ...     assert list(power.read()) == [PowerReading(voltage=0.0, current=0.0),
    ...                                   PowerReading(voltage=5.0, current=2.0)]
    """

    @export
    async def on(self) -> None:
        """Switch the power on."""
        self._switch(True)

    @export
    async def off(self) -> None:
        """Switch the power off."""
        self._switch(False)

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        """Stream simulated readings (see the class docstring)."""
        for index in self._indices():
            if index:
                await anyio.sleep(self.interval)  # also a checkpoint, so an endless stream cannot starve the loop
            yield self._reading(index)


@dataclass(kw_only=True)
class SyncMockPower(PowerInterface, _SimulatedSupply):
    """`MockPower` written with plain (blocking) methods, which the exporter runs in worker threads."""

    @export
    def on(self) -> None:
        """Switch the power on."""
        self._switch(True)

    @export
    def off(self) -> None:
        """Switch the power off."""
        self._switch(False)

    @export
    def read(self) -> Iterator[PowerReading]:
        """Stream simulated readings (see `MockPower`)."""
        for index in self._indices():
            if index and self.interval:
                time.sleep(self.interval)
            yield self._reading(index)


def __getattr__(name: str) -> Any:
    # HttpPower is importable from here as upstream configs and tests expect, without every user
    # of the mocks paying for urllib's import
    if name == "HttpPower":
        from jumpstarter_driver_power.http import HttpPower

        return HttpPower
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
