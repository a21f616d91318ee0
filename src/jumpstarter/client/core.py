"""`AsyncDriverClient`: the async core every driver client is built on."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from jumpstarter.client.calls import CALL_METADATA, error_from_rpc
from jumpstarter.client.connection import Connection
from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb
from jumpstarter.wire.values import Batch, decode, encode

#: Initial-metadata key our exporters send once a driver stream is set up.
STREAM_READY_KEY = "x-jmp-stream"
#: Seconds a stream closed normally may take to deliver what is still queued.
CLOSE_FLUSH_TIMEOUT = 10.0


@dataclass(kw_only=True)
class AsyncDriverClient:
    """Client of one driver instance; children are reachable as attributes (`client.power`)."""

    uuid: str
    labels: dict[str, str] = field(default_factory=dict)
    connection: Connection = field(repr=False)
    children: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    methods_description: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logger = logging.getLogger(f"client.{type(self).__name__}")

    def __getattr__(self, name: str) -> Any:
        children = self.__dict__.get("children")
        if children is not None and name in children:
            return children[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute or child driver {name!r}")

    @property
    def name(self) -> str:
        """The instance name within its parent (`root` for the top)."""
        return self.labels.get("jumpstarter.dev/name", "")

    @property
    def portal(self) -> Any:
        """The blocking portal running async work for sync code (None in async mode)."""
        return self.connection.portal

    @property
    def stack(self) -> Any:
        """An ExitStack closed with the connection, for resources a client keeps open."""
        return self.connection.stack

    def _request(self, message: Any, method: str, args: tuple[Any, ...]) -> Any:
        tagged = self.connection.tagged
        return message(uuid=self.uuid, method=method, args=[encode(a, tagged) for a in args])

    async def call_async(self, method: str, *args: Any) -> Any:
        """Call an exported unary method and return its result."""
        export, _ = self.connection.aio_stubs()
        request = self._request(pb.DriverCallRequest, method, args)
        try:
            response = await export.DriverCall(request, metadata=self.connection.metadata(CALL_METADATA))
        except Exception as exc:
            raise (error_from_rpc(exc) or exc) from None
        return decode(response.result, self.connection.tagged)

    async def streamingcall_async(self, method: str, *args: Any) -> AsyncIterator[Any]:
        """Call an exported generator method; yields its items."""
        export, _ = self.connection.aio_stubs()
        request = self._request(pb.StreamingDriverCallRequest, method, args)
        call = export.StreamingDriverCall(request, metadata=self.connection.metadata(CALL_METADATA))
        tagged = self.connection.tagged
        try:
            async for response in call:
                item = decode(response.result, tagged)
                if type(item) is Batch:
                    for each in item:
                        yield each
                else:
                    yield item
        except Exception as exc:
            raise (error_from_rpc(exc) or exc) from None
        finally:
            call.cancel()

    @asynccontextmanager
    async def stream_async(self, method: str = "connect") -> AsyncIterator[Any]:
        """Open an `@exportstream` method as a bidirectional byte stream.

        Leaving the block normally delivers what is still queued, then ends the stream (the driver
        sees end-of-data); leaving it with an exception resets the stream."""
        request = json.dumps({"kind": "driver", "uuid": self.uuid, "method": method})
        stream = await self._open_stream((("request", request),))
        try:
            yield stream
            with anyio.move_on_after(CLOSE_FLUSH_TIMEOUT):  # a driver that stopped reading
                await stream.flush_and_close()
        finally:
            await stream.aclose()

    async def _open_stream(self, metadata: tuple[tuple[str, str], ...]) -> Any:
        from jumpstarter.streams.frames import FrameStream

        _, router = self.connection.aio_stubs()
        call = router.Stream(metadata=self.connection.metadata(metadata))
        try:
            initial = await call.initial_metadata()
        except Exception as exc:
            raise (error_from_rpc(exc) or exc) from None
        keys = dict(initial or ())
        if STREAM_READY_KEY not in keys and "resource" not in keys and call.done():
            try:
                await call.code()
                await call.read()
            except Exception as exc:
                raise (error_from_rpc(exc) or exc) from None
        stream = FrameStream(call)
        stream.initial_metadata = keys  # type: ignore[attr-defined]
        stream.acks_eof = STREAM_READY_KEY in keys
        return stream

    @asynccontextmanager
    async def resource_async(
        self, source: Any, *, content_encoding: str | None = None, compression: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Send `source` (a path, bytes, a binary file object or an async iterable of bytes) to
        this driver; yields the handle to pass as an argument of a driver call.

        `compression` compresses on the fly on the wire (gzip, xz, bz2, zstd); the exporter
        decompresses before the driver reads. `content_encoding` declares that `source` is already
        compressed that way (the driver then reads it decompressed)."""
        from jumpstarter.client.resources import upload

        async with upload(self, source, content_encoding=content_encoding, compression=compression) as handle:
            yield handle

    async def end_session_async(self) -> tuple[bool, str]:
        """End the session (the exporter runs afterLease, then answers)."""
        export, _ = self.connection.aio_stubs()
        try:
            response = await export.EndSession(pb.EndSessionRequest(), metadata=self.connection.metadata(()))
        except Exception as exc:
            raise (error_from_rpc(exc) or exc) from None
        return response.success, response.message

    async def reset_async(self) -> None:
        """Ask the exporter to reset every driver."""
        export, _ = self.connection.aio_stubs()
        try:
            await export.Reset(pb.ResetRequest(), metadata=self.connection.metadata(()))
        except Exception as exc:
            raise (error_from_rpc(exc) or exc) from None

    @asynccontextmanager
    async def log_stream_async(self, show_all: bool = True) -> AsyncIterator[None]:
        """While the block runs, exporter logs are re-logged locally under `exporter.<source>`."""
        from jumpstarter.client.logs import forward_logs

        async with forward_logs(self, show_all=show_all):
            yield
