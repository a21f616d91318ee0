"""`DriverClient`: the synchronous facade over `AsyncDriverClient`."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jumpstarter.client.calls import CALL_METADATA, error_from_rpc
from jumpstarter.client.core import AsyncDriverClient
from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb
from jumpstarter.wire.values import Batch, decode


@dataclass(kw_only=True)
class DriverClient(AsyncDriverClient):
    """Client of one driver instance, usable from ordinary (non-async) code.

    Subclass it to give a driver a friendly API: `def on(self): return self.call("on")`.
    """

    def call(self, method: str, *args: Any) -> Any:
        """Call an exported unary method and return its result."""
        conn = self.connection
        request = self._request(pb.DriverCallRequest, method, args)
        try:
            response = conn.driver_call()(request, metadata=conn.metadata(CALL_METADATA))
        except Exception as exc:
            raise (error_from_rpc(exc) or exc) from None
        return decode(response.result, conn.tagged)

    def streamingcall(self, method: str, *args: Any) -> Generator[Any, None, None]:
        """Call an exported generator method; yields its items as they arrive."""
        conn = self.connection
        request = self._request(pb.StreamingDriverCallRequest, method, args)
        responses = conn.streaming_call()(request, metadata=conn.metadata(CALL_METADATA))
        tagged = conn.tagged
        try:
            for response in responses:
                item = decode(response.result, tagged)
                if type(item) is Batch:
                    yield from item
                else:
                    yield item
        except Exception as exc:
            raise (error_from_rpc(exc) or exc) from None
        finally:
            responses.cancel()

    @contextmanager
    def stream(self, method: str = "connect") -> Iterator[BlockingStream]:
        """Open an `@exportstream` method as a blocking byte stream (`send`, `receive`)."""
        with self.connection.portal.wrap_async_context_manager(self.stream_async(method)) as stream:
            yield BlockingStream(stream)

    @contextmanager
    def resource(
        self, source: Any, *, content_encoding: str | None = None, compression: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Send a local file, bytes or file object to this driver; yields the handle to pass to a
        driver call (see `resource_async`)."""
        manager = self.resource_async(source, content_encoding=content_encoding, compression=compression)
        with self.connection.portal.wrap_async_context_manager(manager) as handle:
            yield handle

    @contextmanager
    def log_stream(self, show_all: bool = True) -> Iterator[None]:
        """While the block runs, exporter logs are re-logged locally."""
        with self.connection.portal.wrap_async_context_manager(self.log_stream_async(show_all)):
            yield

    def end_session(self) -> tuple[bool, str]:
        """End the session: the exporter runs its afterLease hook (logs stream meanwhile) and
        answers once it is done."""
        try:
            response = self.connection.exporter_stub().EndSession(
                pb.EndSessionRequest(), metadata=self.connection.metadata(())
            )
        except Exception as exc:
            raise (error_from_rpc(exc) or exc) from None
        return response.success, response.message

    def reset(self) -> None:
        """Ask the exporter to reset every driver."""
        try:
            self.connection.exporter_stub().Reset(pb.ResetRequest(), metadata=self.connection.metadata(()))
        except Exception as exc:
            raise (error_from_rpc(exc) or exc) from None


class BlockingStream:
    """A byte stream for synchronous code; sends and receives skip the event loop."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def send(self, data: bytes) -> None:
        """Queue bytes for sending (coalesced with other small writes)."""
        self._stream.send_sync(data)

    def receive(self, timeout: float | None = None) -> bytes:
        """Next chunk; raises `anyio.EndOfStream` once the other side has finished."""
        return self._stream.receive_sync(timeout)

    def send_eof(self) -> None:
        """Tell the other side no more data will come."""
        self._stream.send_eof_sync()

    def __iter__(self) -> Iterator[bytes]:
        from anyio import EndOfStream

        while True:
            try:
                yield self.receive()
            except EndOfStream:
                return


class StubDriverClient(DriverClient):
    """Placeholder for a driver whose client class is not installed or not allowed."""

    reason: str = ""

    def __getattr__(self, name: str) -> Any:
        children = self.__dict__.get("children")
        if children is not None and name in children:
            return children[name]
        if name.startswith("_"):  # keep hasattr()/copy/pickle probing working
            raise AttributeError(name)
        from jumpstarter.errors import MissingDriverClientError

        raise MissingDriverClientError(self.__dict__.get("reason") or "driver client unavailable")

    def call(self, method: str, *args: Any) -> Any:
        from jumpstarter.errors import MissingDriverClientError

        raise MissingDriverClientError(self.__dict__.get("reason") or "driver client unavailable")

    async def call_async(self, method: str, *args: Any) -> Any:
        return self.call(method, *args)
