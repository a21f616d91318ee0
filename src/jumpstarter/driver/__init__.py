"""Exporter-side driver framework: `Driver`, `@export`, `@exportstream`."""

from jumpstarter.driver.base import Driver
from jumpstarter.driver.decorators import CallKind, export, exportstream

__all__ = ["CallKind", "Driver", "export", "exportstream"]
