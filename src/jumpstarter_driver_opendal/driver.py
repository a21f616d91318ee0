"""Storage drivers: `Opendal` (files on any OpenDAL backend reachable from the exporter), and the
file-backed `MockFlasher` / `MockStorageMux` / `MockStorageMuxFlasher` standing in for flashers and
SD-card muxes.

Uploads arrive as resources (decompressed by the exporter when the client sent them compressed)
and are hashed while written; downloads go through `@exportstream` methods speaking the protocol
of `jumpstarter_driver_opendal.transfer`.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import posixpath
import shutil
import tempfile
from abc import ABCMeta, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import anyio

from jumpstarter.driver import Driver, export, exportstream
from jumpstarter.errors import ConfigurationError
from jumpstarter_driver_opendal.common import HashAlgo, MuxState, check_partition
from jumpstarter_driver_opendal.transfer import CHUNK, DownloadStream, file_chunks


def _digest(algo: str) -> Any:
    if algo not in ("md5", "sha256"):
        raise ValueError(f"unsupported hash algorithm {algo!r}; use sha256 or md5")
    return hashlib.new(algo)


async def _store_resource(driver: Driver, handle: Any, write: Callable[[bytes], Any], threaded: bool) -> dict[str, Any]:
    """Feed a client resource to `write`, hashing it; returns {"size", "sha256"} of what was written."""
    digest = hashlib.sha256()
    size = 0

    def step(chunk: bytes) -> None:
        write(chunk)
        digest.update(chunk)

    async with driver.resource(handle) as source:
        async for chunk in source:
            if threaded:
                await anyio.to_thread.run_sync(step, chunk)
            else:
                await write(chunk)
                digest.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


async def _hash_file(path: Path, algo: str) -> str:
    digest = _digest(algo)
    async for chunk in file_chunks(path):
        await anyio.to_thread.run_sync(digest.update, chunk)
    return digest.hexdigest()


async def _store_file(driver: Driver, handle: Any, path: Path) -> dict[str, Any]:
    f: BinaryIO = await anyio.to_thread.run_sync(open, path, "wb")
    try:
        return await _store_resource(driver, handle, f.write, threaded=True)
    finally:
        await anyio.to_thread.run_sync(f.close)


async def _open_file(path: Path, missing: str) -> tuple[int, AsyncIterator[bytes]]:
    try:
        size = (await anyio.Path(path).stat()).st_size
    except FileNotFoundError:
        raise FileNotFoundError(missing) from None
    return size, file_chunks(path)


# ---- interfaces -------------------------------------------------------------------------------
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


# ---- Opendal ------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Opendal(Driver):
    """Files on an OpenDAL backend reachable from the exporter: `scheme` names the service (`fs`,
    `s3`, `http`, ...) and `kwargs` its options (for `fs`: `root`). With `remove_created_on_close`,
    what a session created is removed when the driver closes (fs only)."""

    scheme: str
    kwargs: dict[str, str] = field(default_factory=dict)
    remove_created_on_close: bool = False

    driver_type: ClassVar[str] = "storage"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._created: set[str] = set()
        if not isinstance(self.scheme, str) or not self.scheme:
            raise ConfigurationError(f"Opendal config scheme: expected a service name such as fs, got {self.scheme!r}")
        if not isinstance(self.kwargs, dict):
            raise ConfigurationError(f"Opendal config kwargs: expected a mapping of options, got {self.kwargs!r}")
        try:
            import opendal
        except ImportError:
            raise ConfigurationError("Opendal: the opendal package is not installed "
                                     "(pip install 'jumpstarter[storage]')") from None
        options = {str(k): str(v) for k, v in self.kwargs.items()}
        try:
            self._operator = opendal.AsyncOperator(self.scheme, **options)
        except Exception as exc:
            unknown_scheme = "scheme is not registered" in str(exc)
            reason = str(exc).strip().splitlines()[0]
            raise ConfigurationError(f"Opendal config {'scheme' if unknown_scheme else 'kwargs'}: {reason}") from None

    @classmethod
    def client(cls) -> str:
        """Dotted path of `OpendalClient`."""
        return "jumpstarter_driver_opendal.client.OpendalClient"

    @staticmethod
    def _normalize(path: str) -> str:
        normalized = posixpath.normpath(path.replace("\\", "/")).strip("/")
        return "" if normalized == "." else normalized

    @export
    async def write(self, path: str, src: Any) -> dict[str, Any]:
        """Write the resource `src` to `path`; returns {"size", "sha256"} of what was written."""
        f = await self._operator.open(path, "wb")
        self._created.add(self._normalize(path))
        try:
            return await _store_resource(self, src, f.write, threaded=False)
        finally:
            await f.close()

    async def _open_for_download(self, request: dict[str, Any]) -> tuple[int, AsyncIterator[bytes]]:
        path = request.get("path")
        if not isinstance(path, str):
            raise ValueError("download request needs a path")
        stat = await self._stat_or_missing(path)
        if stat.mode.is_dir():
            raise IsADirectoryError(f"{path} is a directory")
        return int(stat.content_length), self._chunks(path)

    async def _chunks(self, path: str) -> AsyncIterator[bytes]:
        f = await self._operator.open(path, "rb")
        try:
            while chunk := await f.read(size=CHUNK):
                yield bytes(chunk)
        finally:
            await f.close()

    async def _stat_or_missing(self, path: str) -> Any:
        from opendal.exceptions import NotFound

        try:
            return await self._operator.stat(path)
        except NotFound:
            raise FileNotFoundError(f"{path}: no such file in {self.scheme} storage") from None

    @exportstream
    @asynccontextmanager
    async def read_stream(self) -> AsyncIterator[DownloadStream]:
        """Download stream of a file (request: {"path": ...})."""
        stream = DownloadStream(self._open_for_download)
        try:
            yield stream
        finally:
            await stream.aclose()

    @export
    async def stat(self, path: str) -> dict[str, Any]:
        """Metadata of `path`: mode (file/dir), content_length, etag, content_type, last_modified."""
        meta = await self._stat_or_missing(path)
        mode = "file" if meta.mode.is_file() else "dir" if meta.mode.is_dir() else "unknown"
        modified = meta.last_modified
        return {
            "mode": mode,
            "content_length": int(meta.content_length or 0),
            "etag": meta.etag,
            "content_type": meta.content_type,
            "last_modified": modified.isoformat() if modified is not None else None,
        }

    @export
    async def hash(self, path: str, algo: HashAlgo = "sha256") -> str:
        """Hex digest of a file's content (sha256 or md5)."""
        digest = _digest(algo)
        async for chunk in self._chunks_checked(path):
            digest.update(chunk)
        return digest.hexdigest()

    async def _chunks_checked(self, path: str) -> AsyncIterator[bytes]:
        await self._stat_or_missing(path)
        async for chunk in self._chunks(path):
            yield chunk

    @export
    async def exists(self, path: str) -> bool:
        """Whether `path` exists."""
        return bool(await self._operator.exists(path))

    @export
    async def copy(self, source: str, target: str) -> None:
        """Copy a file."""
        await self._operator.copy(source, target)
        self._created.add(self._normalize(target))

    @export
    async def rename(self, source: str, target: str) -> None:
        """Rename a file."""
        await self._operator.rename(source, target)
        self._created.discard(self._normalize(source))
        self._created.add(self._normalize(target))

    @export
    async def delete(self, path: str) -> None:
        """Delete a file (deleting what does not exist is no error)."""
        await self._operator.delete(path)
        self._created.discard(self._normalize(path))

    @export
    async def create_dir(self, path: str) -> None:
        """Create a directory and its parents (`path` ends with '/')."""
        await self._operator.create_dir(path)
        self._created.add(self._normalize(path))

    @export
    async def remove_all(self, path: str) -> None:
        """Remove a directory and everything below it."""
        await self._operator.remove_all(path)
        self._created.discard(self._normalize(path))

    @export
    async def list(self, path: str) -> AsyncIterator[str]:
        """Entries directly under `path` (the directory itself first)."""
        async for entry in await self._operator.list(path):
            yield entry.path

    @export
    async def scan(self, path: str) -> AsyncIterator[str]:
        """Every entry under `path`, recursively."""
        async for entry in await self._operator.scan(path):
            yield entry.path

    @export
    def capability(self) -> dict[str, Any]:
        """What the backend supports (copy, rename, presign_read, ...)."""
        cap = self._operator.capability()
        values = {name: getattr(cap, name) for name in dir(cap) if not name.startswith("_")}
        return {k: v for k, v in values.items() if isinstance(v, (bool, int)) or v is None}

    @export
    def get_created_resources(self) -> builtins.list[str]:
        """Paths created during this session."""
        return sorted(self._created)

    @export
    def register_path(self, path: str) -> None:
        """Count a path created by other means as created in this session (for cleanup)."""
        self._created.add(self._normalize(path))

    def close(self) -> None:
        """Remove what the session created when `remove_created_on_close` is set (fs only)."""
        if not self.remove_created_on_close or not self._created:
            return
        if self.scheme != "fs":
            self.logger.warning("remove_created_on_close supports the fs scheme only, not %s", self.scheme)
            return
        root = os.path.abspath(self.kwargs.get("root", "/"))
        for path in sorted(self._created, reverse=True):  # children before parents
            full = os.path.abspath(os.path.join(root, path))
            if full == root or not full.startswith(root + os.sep):
                continue
            if os.path.isdir(full):
                shutil.rmtree(full, ignore_errors=True)
            elif os.path.lexists(full):
                os.remove(full)
        self._created.clear()


# ---- file-backed stand-ins ----------------------------------------------------------------------
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
        return await _store_file(self, source, target)

    @export
    async def hash(self, partition: str | None = None, algo: HashAlgo = "sha256") -> str | None:
        """Hex digest of a partition's content, None when it was never flashed."""
        target = self._partition(partition)
        if not target.exists():
            return None
        return await _hash_file(target, algo)

    async def _open_for_download(self, request: dict[str, Any]) -> tuple[int, AsyncIterator[bytes]]:
        name = check_partition(request.get("partition"))
        return await _open_file(self._root / name, f"partition {name} has not been flashed")

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
        return await _store_file(self, src, self._file)

    @export
    async def hash(self, algo: HashAlgo = "sha256") -> str:
        """Hex digest of the storage's content."""
        return await _hash_file(self._file, algo)

    @exportstream
    @asynccontextmanager
    async def read_stream(self) -> AsyncIterator[DownloadStream]:
        """Download stream of the storage's content (request: {})."""

        async def opener(request: dict[str, Any]) -> tuple[int, AsyncIterator[bytes]]:
            return await _open_file(self._file, f"storage file {self._file} is missing")

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
