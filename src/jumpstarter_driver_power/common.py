"""What power drivers and clients share: the reading type and the errors."""

from __future__ import annotations

from pydantic import BaseModel

from jumpstarter.errors import DriverError


class PowerReading(BaseModel):
    """One measurement of the supply: volts and amperes."""

    voltage: float
    current: float

    @property
    def apparent_power(self) -> float:
        """Voltage times current (VA)."""
        return self.voltage * self.current


class HttpPowerError(DriverError):
    """An HTTP-controlled power switch refused a request or could not be reached."""
