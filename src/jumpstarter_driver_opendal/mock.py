"""File-backed stand-ins for storage hardware: `MockFlasher` (partitions are files),
`MockStorageMux` (an SD-card mux whose card is a file) and `MockStorageMuxFlasher`; for trying
flashing flows without hardware. Their type strings live in `jumpstarter_driver_opendal.driver`,
as upstream names them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jumpstarter.driver import Driver, export, exportstream
from jumpstarter.errors import ConfigurationError
from jumpstarter_driver_opendal.common import HashAlgo, MuxState, check_partition
from jumpstarter_driver_opendal.driver_files import hash_file, open_file, store_file
from jumpstarter_driver_opendal.interfaces import FlasherInterface, StorageMuxFlasherInterface, StorageMuxInterface
from jumpstarter_driver_opendal.transfer import DownloadStream


@dataclass(kw_only=True)
class MockFlasher(FlasherInterface, Driver):
    """A flasher whose partitions are files in `directory` (default: a temporary directory removed
    on close); for trying flashing flows without hardware."""

    directory: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if self.directory is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="jmp-flasher-")
            self._root = Path(self._tempdir.name)
        else:
            self._root = Path(self.directory)
            if not self._root.is_dir():
                raise ConfigurationError(f"MockFlasher config directory: {self.directory!r} is not a directory")

    def _partition(self, partition: str | None) -> Path:
        return self._root / check_partition(partition)

    @export
    async def flash(self, source: Any, partition: str | None = None) -> dict[str, Any]:
        """Write the resource `source` to `partition`; returns {"size", "sha256"}."""
        target = self._partition(partition)
        self.logger.info("flashing %s", target.name)
        return await store_file(self, source, target)

    @export
    async def hash(self, partition: str | None = None, algo: HashAlgo = "sha256") -> str | None:
        """Hex digest of a partition's content, None when it was never flashed."""
        target = self._partition(partition)
        if not target.exists():
            return None
        return await hash_file(target, algo)

    async def _open_for_download(self, request: dict[str, Any]) -> tuple[int, AsyncIterator[bytes]]:
        name = check_partition(request.get("partition"))
        return await open_file(self._root / name, f"partition {name} has not been flashed")

    @exportstream
    @asynccontextmanager
    async def dump_stream(self) -> AsyncIterator[DownloadStream]:
        """Download stream of a partition (request: {"partition": name or null})."""
        stream = DownloadStream(self._open_for_download)
        try:
            yield stream
        finally:
            await stream.aclose()

    def close(self) -> None:
        """Remove the temporary directory, if one was made."""
        if self._tempdir is not None:
            self._tempdir.cleanup()


@dataclass(kw_only=True)
class MockStorageMux(StorageMuxInterface, Driver):
    """An SD-card mux whose card is the file `path` (default: a temporary file removed on close)."""

    path: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._state = MuxState.OFF
        self._temporary = self.path is None
        if self.path is None:
            fd, self.path = tempfile.mkstemp(prefix="jmp-storage-", suffix=".img")
            os.close(fd)
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise ConfigurationError(f"MockStorageMux config path: directory {str(parent)!r} does not exist")
        Path(self.path).touch()  # a blank card until something is written

    @property
    def _file(self) -> Path:
        assert self.path is not None
        return Path(self.path)

    def _switch(self, state: MuxState) -> None:
        self.logger.info("storage connected to %s", state.value)
        self._state = state

    @export
    async def host(self) -> None:
        """Connect the storage to the exporter host."""
        self._switch(MuxState.HOST)

    @export
    async def dut(self) -> None:
        """Connect the storage to the DUT."""
        self._switch(MuxState.DUT)

    @export
    async def off(self) -> None:
        """Disconnect the storage."""
        self._switch(MuxState.OFF)

    @export
    def state(self) -> str:
        """Where the storage is connected: off, host or dut."""
        return self._state.value

    @export
    async def write(self, src: Any) -> dict[str, Any]:
        """Write the resource `src` as the storage's new content; returns {"size", "sha256"}."""
        return await store_file(self, src, self._file)

    @export
    async def hash(self, algo: HashAlgo = "sha256") -> str:
        """Hex digest of the storage's content."""
        return await hash_file(self._file, algo)

    @exportstream
    @asynccontextmanager
    async def read_stream(self) -> AsyncIterator[DownloadStream]:
        """Download stream of the storage's content (request: {})."""

        async def opener(request: dict[str, Any]) -> tuple[int, AsyncIterator[bytes]]:
            return await open_file(self._file, f"storage file {self._file} is missing")

        stream = DownloadStream(opener)
        try:
            yield stream
        finally:
            await stream.aclose()

    def close(self) -> None:
        """Remove the temporary storage file, if one was made."""
        if self._temporary:
            self._file.unlink(missing_ok=True)


@dataclass(kw_only=True)
class MockStorageMuxFlasher(StorageMuxFlasherInterface, MockStorageMux):
    """`MockStorageMux` with the flasher client (`flash` = host, write, dut)."""
