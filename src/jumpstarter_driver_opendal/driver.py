"""Storage drivers: `Opendal` (files on any OpenDAL backend reachable from the exporter), and,
under the type strings upstream gives them, the storage interfaces (`interfaces`) and the
file-backed `MockFlasher` / `MockStorageMux` / `MockStorageMuxFlasher` (`mock`).

Uploads arrive as resources (decompressed by the exporter when the client sent them compressed)
and are hashed while written; downloads go through `@exportstream` methods speaking the protocol
of `jumpstarter_driver_opendal.transfer`.
"""

from __future__ import annotations

import builtins
import os
import posixpath
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from jumpstarter.driver import Driver, export, exportstream
from jumpstarter.errors import ConfigurationError
from jumpstarter_driver_opendal.common import HashAlgo
from jumpstarter_driver_opendal.driver_files import digest_for, store_resource
from jumpstarter_driver_opendal.interfaces import FlasherInterface, StorageMuxFlasherInterface, StorageMuxInterface
from jumpstarter_driver_opendal.transfer import CHUNK, DownloadStream


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
            return await store_resource(self, src, f.write, threaded=False)
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
        digest = digest_for(algo)
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


# the file-backed stand-ins, under the type strings upstream gives them
from jumpstarter_driver_opendal.mock import MockFlasher, MockStorageMux, MockStorageMuxFlasher  # noqa: E402

__all__ = [
    "FlasherInterface", "MockFlasher", "MockStorageMux", "MockStorageMuxFlasher", "Opendal",
    "StorageMuxFlasherInterface", "StorageMuxInterface",
]
