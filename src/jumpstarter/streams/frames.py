"""A bidirectional byte stream carried as `RouterService.Stream` frames over one gRPC call.

The client end (`FrameStream`) is usable from its event loop (`send`, `receive`) and from other
threads (`send_sync`, `receive_sync`) without a hop through the loop per call: both sides meet
in lock-protected buffers. Writes are coalesced: the first write goes out at once, and writes made
while a frame is in flight are gathered into the next frame, so many small writes cost few gRPC
messages while an interactive console still sees each keystroke immediately.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from anyio import EndOfStream

from jumpstarter.errors import StreamClosedError
from jumpstarter.protocol.v1 import router_pb2

DATA = router_pb2.FRAME_TYPE_DATA
RST = router_pb2.FRAME_TYPE_RST_STREAM
PING = router_pb2.FRAME_TYPE_PING
GOAWAY = router_pb2.FRAME_TYPE_GOAWAY

#: PING payload our exporters send once they have read our GOAWAY.
GOAWAY_ACK = b"jmp-goaway-ack"
#: How long closing waits for that acknowledgement.
ACK_TIMEOUT = 5.0

#: Largest payload put in one frame (gRPC's default receive limit is 4 MiB).
MAX_FRAME = 1 << 20
#: Buffered bytes (each way) past which writers wait and the reader stops reading.
HIGH_WATER = 4 << 20



class FrameStream:
    """Client end of a byte stream over a grpc.aio stream-stream call."""

    def __init__(self, call: Any, request_type: Any = router_pb2.StreamRequest) -> None:
        self._call = call
        self._request = request_type
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        # outgoing
        self._out: list[bytes] = []  # queued chunks, joined once per frame (no copy per send)
        self._out_bytes = 0
        self._out_eof = False
        self._out_wake = asyncio.Event()
        self._out_space = asyncio.Event()
        self._out_space_sync = threading.Condition(self._lock)
        self._out_signalled = False
        # incoming
        self._in: deque[bytes] = deque()
        self._in_bytes = 0
        self._in_eof = False
        self._in_error: BaseException | None = None
        self._in_ready = asyncio.Event()
        self._in_ready_sync = threading.Condition(self._lock)
        self._in_space = asyncio.Event()
        self._closed = False
        self._eof_acked = asyncio.Event()
        #: Whether the peer acknowledges half-closes (our exporters say so when the stream opens).
        self.acks_eof = False
        self._tasks = [
            asyncio.ensure_future(self._writer()),
            asyncio.ensure_future(self._reader()),
        ]

    # ---- sending -------------------------------------------------------------------------
    def _check_send(self) -> None:
        if self._closed:
            raise StreamClosedError("stream is closed")
        if self._out_eof:
            raise StreamClosedError("stream already half-closed (send_eof called)")
        if self._in_error is not None and not isinstance(self._in_error, EndOfStream):
            raise StreamClosedError(str(self._in_error))

    async def send(self, data: bytes) -> None:
        """Queue bytes for sending (waits while too much is buffered)."""
        while True:
            with self._lock:
                self._check_send()
                if self._out_bytes < HIGH_WATER:
                    self._out.append(bytes(data))
                    self._out_bytes += len(data)
                    self._out_wake.set()
                    return
                self._out_space.clear()
            await self._out_space.wait()

    def send_sync(self, data: bytes) -> None:
        """`send` from a thread other than the stream's event loop."""
        with self._lock:
            while True:
                self._check_send()
                if self._out_bytes < HIGH_WATER:
                    break
                self._out_space_sync.wait(1.0)
            self._out.append(bytes(data))
            self._out_bytes += len(data)
            if not self._out_signalled:
                self._out_signalled = True
                self._loop.call_soon_threadsafe(self._out_wake.set)

    async def send_eof(self) -> None:
        """Flush, then tell the other side no more data will come."""
        with self._lock:
            self._out_eof = True
            self._out_wake.set()

    def send_eof_sync(self) -> None:
        """`send_eof` from another thread."""
        with self._lock:
            self._out_eof = True
        self._loop.call_soon_threadsafe(self._out_wake.set)

    async def _writer(self) -> None:
        call, make = self._call, self._request
        try:
            while True:
                await self._out_wake.wait()
                with self._lock:
                    self._out_wake.clear()
                    self._out_signalled = False
                    chunks, self._out, self._out_bytes = self._out, [], 0
                    eof = self._out_eof
                    self._out_space.set()
                    self._out_space_sync.notify_all()
                for payload in _frames(chunks):
                    await call.write(make(payload=payload, frame_type=DATA))
                if eof:
                    await call.write(make(frame_type=GOAWAY))
                    await call.done_writing()
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the call failed; readers will see why
            with self._lock:
                self._closed = True
                self._out_space_sync.notify_all()
            self._out_space.set()
            self._fail(exc)

    # ---- receiving -----------------------------------------------------------------------
    async def _reader(self) -> None:
        call = self._call
        try:
            while True:
                frame = await call.read()
                if frame is _aio_eof():
                    self._fail(EndOfStream())
                    return
                kind = frame.frame_type
                if kind == DATA:
                    if not frame.payload:
                        continue
                    with self._lock:
                        self._in.append(frame.payload)
                        self._in_bytes += len(frame.payload)
                        full = self._in_bytes >= HIGH_WATER
                        if full:
                            self._in_space.clear()
                        self._in_ready.set()
                        self._in_ready_sync.notify()
                    if full:
                        await self._in_space.wait()
                elif kind == GOAWAY:
                    self._fail(EndOfStream())
                    return
                elif kind == PING and frame.payload == GOAWAY_ACK:
                    self._eof_acked.set()
                elif kind == RST:
                    self._fail(StreamClosedError("stream reset by the other side"))
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._in_error is None:
                self._in_error = exc
            self._in_ready.set()
            self._in_ready_sync.notify_all()

    def _take(self) -> bytes | None:
        """Pop the next chunk (caller holds the lock); None when nothing is buffered."""
        if self._in:
            chunk = self._in.popleft()
            before = self._in_bytes
            self._in_bytes -= len(chunk)
            if before >= HIGH_WATER > self._in_bytes:
                self._loop.call_soon_threadsafe(self._in_space.set)
            if not self._in:
                self._in_ready.clear()
            return chunk
        return None

    def _raise_end(self) -> None:
        exc = self._in_error
        if isinstance(exc, EndOfStream) or exc is None:
            raise EndOfStream()
        raise _translate(exc)

    async def receive(self) -> bytes:
        """Next chunk of bytes; raises `EndOfStream` when the other side has finished."""
        while True:
            with self._lock:
                chunk = self._take()
                if chunk is not None:
                    return chunk
                if self._in_error is not None or self._closed:
                    self._raise_end()
            await self._in_ready.wait()

    def receive_sync(self, timeout: float | None = None) -> bytes:
        """`receive` from another thread."""
        with self._lock:
            while True:
                chunk = self._take()
                if chunk is not None:
                    return chunk
                if self._in_error is not None or self._closed:
                    self._raise_end()
                if not self._in_ready_sync.wait(timeout):
                    raise TimeoutError("no data received within the timeout")

    # ---- closing -------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close both directions; an unfinished stream is cancelled (the peer sees a reset)."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
            self._out_space_sync.notify_all()
            self._in_ready_sync.notify_all()
        self._out_space.set()
        self._in_space.set()
        writer, reader = self._tasks
        if not writer.done():
            writer.cancel()
        if not reader.done():
            reader.cancel()
        self._call.cancel()
        await asyncio.gather(writer, reader, return_exceptions=True)

    async def flush_and_close(self) -> None:
        """Half-close, wait until everything queued has been sent (and, with our exporters, until
        the half-close was read), then close."""
        await self.send_eof()
        writer, reader = self._tasks
        await asyncio.gather(writer, return_exceptions=True)
        if self.acks_eof and not reader.done():
            acked = asyncio.ensure_future(self._eof_acked.wait())
            await asyncio.wait({acked, reader}, timeout=ACK_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            acked.cancel()
        await self.aclose()


def _frames(chunks: list[bytes]) -> Iterator[bytes]:
    """Payloads of at most MAX_FRAME bytes from queued chunks (a lone chunk is sent as is)."""
    if len(chunks) == 1 and len(chunks[0]) <= MAX_FRAME:
        yield chunks[0]
        return
    data = b"".join(chunks)
    for start in range(0, len(data), MAX_FRAME):
        yield data[start : start + MAX_FRAME]


def _aio_eof() -> Any:
    from grpc import aio

    return aio.EOF  # type: ignore[attr-defined]


def _translate(exc: BaseException) -> BaseException:
    """Turn a gRPC failure on the stream into our error type."""
    from jumpstarter.client.calls import error_from_rpc

    translated = error_from_rpc(exc)
    return translated if translated is not None else exc
