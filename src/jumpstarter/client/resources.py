"""Client side of resources: push local bytes to a driver, optionally compressed on the fly."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from jumpstarter.streams import encoding

if TYPE_CHECKING:
    from jumpstarter.client.core import AsyncDriverClient

CHUNK = 1 << 20


async def _open_source(source: Any) -> Any:
    """`source`, ready to read: a path is opened here, so that a missing file or a wrong type fails
    before the upload starts, not after the driver got a handle."""
    if isinstance(source, (str, os.PathLike)):
        return await anyio.open_file(Path(source), "rb")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return source
    if hasattr(source, "__aiter__") or hasattr(source, "read"):
        return source
    raise TypeError(f"cannot send {type(source).__name__} as a resource (give a path, bytes or a file)")


async def _chunks(source: Any) -> AsyncIterator[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]
    elif isinstance(source, anyio.AsyncFile):
        while chunk := await source.read(CHUNK):
            yield chunk
    elif hasattr(source, "__aiter__"):
        async for chunk in source:
            yield bytes(chunk)
    else:
        while chunk := await anyio.to_thread.run_sync(source.read, CHUNK):
            yield chunk


@asynccontextmanager
async def upload(
    client: AsyncDriverClient, source: Any, *, content_encoding: str | None, compression: str | None
) -> AsyncIterator[dict[str, Any]]:
    """Open a resource stream to `client`'s driver and feed it from `source` in the background."""
    if content_encoding and compression:
        raise ValueError("give either content_encoding (source already compressed) or compression, not both")
    wire_encoding = compression or content_encoding
    compress = encoding.compressor(compression) if compression else None
    source = await _open_source(source)
    try:
        async with _upload_stream(client, source, wire_encoding, compress) as handle:
            yield handle
    finally:
        if isinstance(source, anyio.AsyncFile):
            await source.aclose()


@asynccontextmanager
async def _upload_stream(
    client: AsyncDriverClient, source: Any, wire_encoding: str | None, compress: encoding.Codec | None
) -> AsyncIterator[dict[str, Any]]:
    request = json.dumps({"kind": "resource", "uuid": client.uuid, "x_jmp_content_encoding": wire_encoding})
    stream = await client._open_stream((("request", request),))
    handle = json.loads(stream.initial_metadata["resource"])

    async def feed() -> None:
        try:
            await pump()
        except BaseException:
            await stream.aclose()  # reset: the driver must see an incomplete upload, not the end of it
            raise

    async def pump() -> None:
        async for chunk in _chunks(source):
            data = compress.feed(chunk) if compress else chunk
            if data:
                await stream.send(data)
        if compress:
            tail = compress.finish()
            if tail:
                await stream.send(tail)
        await stream.send_eof()

    # a plain task rather than a task group: an exception from the caller's block (a failing driver
    # call) must come out as itself, not wrapped in an ExceptionGroup
    feeder = asyncio.ensure_future(feed())
    try:
        yield handle
    finally:
        if not feeder.done():
            feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await stream.aclose()
    if not feeder.cancelled() and feeder.exception() is not None:
        raise feeder.exception()  # type: ignore[misc]
