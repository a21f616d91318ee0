"""The `Driver` base class: an exported device interface living on the exporter."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID, uuid4

from jumpstarter.driver.decorators import CallKind, call_kind

if TYPE_CHECKING:
    from jumpstarter.driver.report import DriverReport

#: Label naming the client class for a driver instance.
CLIENT_LABEL = "jumpstarter.dev/client"
#: Label naming the driver instance within its parent.
NAME_LABEL = "jumpstarter.dev/name"


@dataclass(kw_only=True)
class Driver:
    """Base class of every driver.

    Subclasses are dataclasses whose fields are the `config:` keys of an exporter config.
    Methods decorated with `@export`/`@exportstream` are callable from clients; nothing else is.
    """

    children: dict[str, Driver] = field(default_factory=dict)
    description: str | None = None
    methods_description: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    log_level: str = "INFO"
    uuid: UUID = field(default_factory=uuid4)
    #: Client-supplied byte streams handed to this driver, keyed by resource UUID.
    resources: dict[UUID, Any] = field(default_factory=dict, repr=False)

    #: Category used in logs and telemetry (power, serial, storage, network, composite, ...).
    driver_type: ClassVar[str] = "other"

    def __post_init__(self) -> None:
        base = logging.getLogger(f"driver.{type(self).__name__}")
        base.setLevel(self.log_level.upper())
        self.logger = logging.LoggerAdapter(base, {"jmp_uuid": str(self.uuid), "jmp_driver": self})

    @classmethod
    def client(cls) -> str:
        """Dotted path of the client class used for this driver on the client side."""
        return "jumpstarter.client.DriverClient"

    def extra_labels(self) -> dict[str, str]:
        """Labels added to this instance's report; override to publish facts about the device."""
        return {}

    def reset(self) -> Any:
        """Called at the start of every session; bring the device to a known state."""
        return None

    def close(self) -> Any:
        """Called when the exporter stops; release whatever the driver holds."""
        return None

    @classmethod
    def exported_methods(cls) -> dict[str, CallKind]:
        """Names and call kinds of every exported method of this driver class."""
        found = {}
        for name, member in inspect.getmembers(cls):
            kind = call_kind(member)
            if kind is not None:
                found[name] = kind
        return found

    def enumerate(self) -> Iterator[tuple[Driver, Driver | None, str]]:
        """Yield (driver, parent, name) for this driver and all descendants, parents first."""
        yield from _walk(self, None, "root")

    def report(self, parent: Driver | None = None, name: str = "root") -> DriverReport:
        """This instance's report: UUIDs, labels (client class, name), description, method help."""
        from jumpstarter.driver.report import build_report

        return build_report(self, parent, name)

    @asynccontextmanager
    async def resource(self, handle: Any) -> AsyncIterator[Any]:
        """Open a client-supplied resource (the handle a client passed as an argument) as a
        byte stream; the bytes arrive decompressed."""
        from jumpstarter.streams.resources import open_resource

        async with open_resource(self, handle) as stream:
            yield stream


def _walk(driver: Driver, parent: Driver | None, name: str) -> Iterator[tuple[Driver, Driver | None, str]]:
    yield driver, parent, name
    for child_name, child in driver.children.items():
        yield from _walk(child, driver, child_name)
