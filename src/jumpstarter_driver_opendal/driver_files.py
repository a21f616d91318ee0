"""Driver-side helpers of the storage drivers: storing client resources into files (hashing
what is written) and reading files back for downloads."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from jumpstarter.driver import Driver
from jumpstarter_driver_opendal.transfer import file_chunks


def digest_for(algo: str) -> Any:
    """A new hash object for `algo` (sha256 or md5)."""
    if algo not in ("md5", "sha256"):
        raise ValueError(f"unsupported hash algorithm {algo!r}; use sha256 or md5")
    return hashlib.new(algo)


async def store_resource(driver: Driver, handle: Any, write: Callable[[bytes], Any], threaded: bool) -> dict[str, Any]:
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


async def hash_file(path: Path, algo: str) -> str:
    """The hex digest of the file at `path`."""
    digest = digest_for(algo)
    async for chunk in file_chunks(path):
        await anyio.to_thread.run_sync(digest.update, chunk)
    return digest.hexdigest()


async def store_file(driver: Driver, handle: Any, path: Path) -> dict[str, Any]:
    """Write a client resource into the file at `path`; {"size", "sha256"} of what was written."""
    f: BinaryIO = await anyio.to_thread.run_sync(open, path, "wb")
    try:
        return await store_resource(driver, handle, f.write, threaded=True)
    finally:
        await anyio.to_thread.run_sync(f.close)


async def open_file(path: Path, missing: str) -> tuple[int, AsyncIterator[bytes]]:
    """(size, chunks) of the file at `path`; FileNotFoundError(`missing`) when there is none."""
    try:
        size = (await anyio.Path(path).stat()).st_size
    except FileNotFoundError:
        raise FileNotFoundError(missing) from None
    return size, file_chunks(path)
