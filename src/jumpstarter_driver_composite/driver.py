"""`Composite`: a driver with no methods of its own, only children."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from jumpstarter.driver.base import Driver


@dataclass(kw_only=True)
class Composite(Driver):
    """Groups child drivers; the root of every exporter's tree and each `{children: ...}` entry."""

    driver_type: ClassVar[str] = "composite"

    @classmethod
    def client(cls) -> str:
        """Dotted path of `CompositeClient`."""
        return "jumpstarter_driver_composite.client.CompositeClient"
