"""Resources: bytes a client hands to a driver method (an image to flash, a file to store).

The client opens `RouterService.Stream` with `request={"kind": "resource", "uuid": <driver>}`; the
exporter answers with a handle in the `resource` initial-metadata entry, then receives the bytes.
The client passes the handle as an ordinary call argument; the driver opens it with
`async with self.resource(handle) as stream`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from jumpstarter.errors import StreamClosedError
from jumpstarter.streams import encoding

if TYPE_CHECKING:
    from jumpstarter.driver.base import Driver
    from jumpstarter.exporter.session import Session

BUFFERED_CHUNKS = 16


@dataclass(slots=True)
class Upload:
    """The exporter's end of one upload: the chunks received, and whether the client finished
    sending (an upload whose stream ends any other way was cut short)."""

    chunks: MemoryObjectReceiveStream[bytes]
    complete: bool = False


@dataclass(slots=True)
class ResourceStream:
    """What a driver reads a resource from: `receive()` chunks or `async for`."""

    source: Upload
    codec: encoding.Codec | None
    _done: bool = False

    async def receive(self) -> bytes:
        """Next chunk of (decompressed) bytes; raises `anyio.EndOfStream` at the end."""
        while True:
            if self._done:
                raise anyio.EndOfStream
            try:
                chunk = await self.source.chunks.receive()
            except anyio.EndOfStream:
                self._done = True
                if not self.source.complete:
                    raise StreamClosedError("the client stopped sending this resource early") from None
                tail = self.codec.finish() if self.codec else b""
                if tail:
                    return tail
                raise
            if self.codec is not None:
                chunk = self.codec.feed(chunk)
            if chunk:
                return chunk

    def __aiter__(self) -> ResourceStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def read_all(self) -> bytes:
        """Everything that is left."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        """Stop reading."""
        await self.source.chunks.aclose()


def handle_uuid(handle: Any) -> tuple[UUID, str | None]:
    """The resource UUID and content encoding of a handle (dict, JSON text or our dataclass)."""
    if isinstance(handle, (str, bytes)):
        handle = json.loads(handle)
    if not isinstance(handle, dict) or handle.get("kind", "client_stream") != "client_stream":
        raise ValueError(f"not a client stream resource handle: {handle!r}")
    return UUID(str(handle["uuid"])), handle.get("x_jmp_content_encoding")


@asynccontextmanager
async def open_resource(driver: Driver, handle: Any) -> AsyncIterator[ResourceStream]:
    """Open a resource handed to `driver` (used by `Driver.resource`)."""
    rid, content_encoding = handle_uuid(handle)
    try:
        source = driver.resources.pop(rid)
    except KeyError:
        raise FileNotFoundError(f"resource {rid} is unknown or was already used") from None
    codec = encoding.decompressor(content_encoding) if content_encoding else None
    stream = ResourceStream(source, codec)
    try:
        yield stream
    finally:
        await stream.aclose()


async def serve_resource(session: Session, request: dict[str, Any], request_iterator: Any, context: Any) -> None:
    """Exporter side of a resource Stream: register a handle, then feed the received bytes to it."""
    from jumpstarter.exporter.servicer import DATA, GOAWAY, RST

    driver = session.drivers.get(str(request.get("uuid")))
    if driver is None:
        from jumpstarter.errors import DriverNotFoundError

        raise DriverNotFoundError(f"no driver instance with uuid {request.get('uuid')} on this exporter")
    content_encoding = request.get("x_jmp_content_encoding")
    if content_encoding:
        encoding.decompressor(content_encoding)  # rejects unsupported encodings up front
    rid = uuid4()
    send, receive = anyio.create_memory_object_stream[bytes](BUFFERED_CHUNKS)
    upload = Upload(receive)
    driver.resources[rid] = upload
    handle = {"kind": "client_stream", "uuid": str(rid), "x_jmp_content_encoding": content_encoding}
    await context.send_initial_metadata(
        (("resource", json.dumps(handle)), ("x_jmp_accept_encoding", ",".join(encoding.supported())))
    )
    try:
        async with send:
            async for frame in request_iterator:
                if frame.frame_type == DATA and frame.payload:
                    await send.send(frame.payload)
                elif frame.frame_type == GOAWAY:
                    upload.complete = True  # only GOAWAY says "all sent": a cancelled call ends frames too
                    break
                elif frame.frame_type == RST:
                    raise ConnectionResetError("resource upload reset by the client")
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the driver stopped reading early
    try:
        # Stay open until the client is done with the handle (it cancels this call), so that a
        # handle whose bytes all fit in the buffer is still there when the driver opens it.
        await anyio.sleep_forever()
    finally:
        driver.resources.pop(rid, None)
