"""The storage interfaces: flashers (images per partition) and storage muxes (a card switched
between the host and the DUT). Drivers implement them; `jumpstarter_driver_opendal.driver`
re-exports them under upstream's import path."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any, ClassVar


class FlasherInterface(metaclass=ABCMeta):
    """A device that is flashed with images, optionally per partition."""

    driver_type: ClassVar[str] = "storage"

    @classmethod
    def client(cls) -> str:
        """Dotted path of `FlasherClient`."""
        return "jumpstarter_driver_opendal.client.FlasherClient"

    @abstractmethod
    async def flash(self, source: Any, partition: str | None = None) -> dict[str, Any]:
        """Write the resource `source` to `partition` (None: the whole device)."""

    @abstractmethod
    def dump_stream(self) -> Any:
        """Download stream of a partition's content (request: {"partition": name})."""


class StorageMuxInterface(metaclass=ABCMeta):
    """A storage device switched between the exporter host and the DUT (an SD-card mux)."""

    driver_type: ClassVar[str] = "storage"

    @classmethod
    def client(cls) -> str:
        """Dotted path of `StorageMuxClient`."""
        return "jumpstarter_driver_opendal.client.StorageMuxClient"

    @abstractmethod
    async def host(self) -> None:
        """Connect the storage to the exporter host."""

    @abstractmethod
    async def dut(self) -> None:
        """Connect the storage to the DUT."""

    @abstractmethod
    async def off(self) -> None:
        """Disconnect the storage."""

    @abstractmethod
    async def write(self, src: Any) -> dict[str, Any]:
        """Write the resource `src` to the storage."""

    @abstractmethod
    def read_stream(self) -> Any:
        """Download stream of the storage's content."""


class StorageMuxFlasherInterface(StorageMuxInterface):
    """A storage mux also usable as a flasher (`flash` = host, write, dut)."""

    @classmethod
    def client(cls) -> str:
        """Dotted path of `StorageMuxFlasherClient`."""
        return "jumpstarter_driver_opendal.client.StorageMuxFlasherClient"
