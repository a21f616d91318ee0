"""Upstream's import path for `HttpPower`; the driver lives in `jumpstarter_driver_power.http`."""
