"""`CompositeClient`: the client of a `Composite`; children are its attributes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jumpstarter.client import DriverClient


@dataclass(kw_only=True)
class CompositeClient(DriverClient):
    """Client of a group of drivers: reach a child as an attribute (`client.power`) or by name."""

    def __getitem__(self, name: str) -> Any:
        return self.children[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.children)
