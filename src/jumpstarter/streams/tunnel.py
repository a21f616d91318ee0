"""One connection's bytes through the router: a unix-socket connection on one side, a
`RouterService.Stream` call on the other, its bytes carried as DATA frames.

Both ends of a routed connection use this: the client bridges each connection accepted on its
private listener, the exporter bridges each stream it is told about to a fresh connection to its
own session socket. What travels is the raw HTTP/2 of the client's gRPC connection, so the exporter
serves routed clients with exactly the servicers local clients get.

GOAWAY marks the end of one direction (the other may go on); RST_STREAM, a failed call or a broken
socket ends both. PING frames are ignored.

Cost matters here (every byte of a routed connection passes twice): the call carries serialized
frames as bytes (encoded and decoded by hand, payloads never copied into protobuf messages), a
frame carries whatever the socket has buffered (up to `READ_SIZE`), and the gRPC connection inside
the tunnel gets a larger flow-control window (`TUNNELLED_OPTIONS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import grpc

from jumpstarter.errors import StreamClosedError
from jumpstarter.protocol.v1 import router_pb2

log = logging.getLogger("jumpstarter.tunnel")

DATA = router_pb2.FRAME_TYPE_DATA
RST = router_pb2.FRAME_TYPE_RST_STREAM
GOAWAY = router_pb2.FRAME_TYPE_GOAWAY
#: Largest read from the socket, i.e. largest payload of one frame.
READ_SIZE = 1 << 20
#: Room for a frame header in front of the read buffer (tag + varint of READ_SIZE).
HEADROOM = 8
STREAM_METHOD = "/jumpstarter.v1.RouterService/Stream"
#: How long a finished tunnel waits for the call's final status before cancelling it.
CLOSE_GRACE = 5.0


#: Extra options for both ends of a gRPC connection carried through a tunnel (the client's channel
#: on the lease socket, the exporter's session server): the HTTP/2 flow-control window must cover
#: the tunnel's longer round trip, or a byte stream stalls on it (measured: ~200 vs ~310 MB/s).
TUNNELLED_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.http2.lookahead_bytes", 4 << 20),)


def open_stream(channel: grpc.aio.Channel, token: str) -> Any:
    """Start `RouterService.Stream` on a router channel with a stream token. The call sends and
    receives serialized frames as bytes (`encode_data`, `decode`): a tunnel moves a lot of bytes,
    and building protobuf messages around them would copy each payload twice more."""
    stream: Any = channel.stream_stream(STREAM_METHOD, None, None)  # no (de)serializers: bytes both ways
    return stream(metadata=(("authorization", f"Bearer {token}"),))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes | memoryview, index: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, index
        shift += 7


def encode_data(payload: bytes) -> bytes:
    """A serialized DATA frame (`StreamRequest{payload}`; frame_type DATA is the default)."""
    return b"\x0a" + _varint(len(payload)) + payload


GOAWAY_FRAME = router_pb2.StreamRequest(frame_type=GOAWAY).SerializeToString()


def decode(message: bytes) -> tuple[int, memoryview]:
    """(frame type, payload) of a serialized `StreamResponse`, without copying the payload."""
    view = memoryview(message)
    kind: int = DATA
    payload, index = view[:0], 0
    try:
        while index < len(view):
            tag = view[index]
            if tag == 0x0A:  # field 1, bytes: the payload
                length, index = _read_varint(view, index + 1)
                payload = view[index : index + length]
                index += length
            elif tag == 0x10:  # field 2, varint: the frame type
                kind, index = _read_varint(view, index + 1)
            else:
                raise ValueError(tag)
    except (ValueError, IndexError):  # unusual encoding (unknown fields): let protobuf parse it
        frame = router_pb2.StreamResponse.FromString(message)
        return frame.frame_type, memoryview(frame.payload)
    return kind, payload


async def first_payload(call: Any) -> bytes:
    """The first bytes a router Stream call brings (b"" when it ends before any): a tunnel reads
    them before choosing where the connection goes (the connecting side always speaks first)."""
    while (message := await call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
        kind, payload = decode(message)
        if kind == DATA and payload:
            return bytes(payload)
        if kind == GOAWAY:
            break
        if kind == RST:
            raise StreamClosedError("routed connection reset by the other side")
    return b""


async def splice(call: Any, sock: socket.socket, *, outbound_first: bytes = b"", inbound_first: bytes = b"") -> None:
    """Carry bytes between a (non-blocking) socket connection and a router Stream call until both
    directions have ended; any failure ends both (and raises). `outbound_first`/`inbound_first`:
    bytes already read from the socket / the call, passed on first."""
    loop = asyncio.get_running_loop()

    async def outbound() -> None:
        if outbound_first:
            await call.write(encode_data(outbound_first))
        # the frame header goes right before the bytes read, so a frame costs one copy
        buffer = bytearray(HEADROOM + READ_SIZE)
        view = memoryview(buffer)
        eof = False
        while not eof and (count := await loop.sock_recv_into(sock, view[HEADROOM:])):
            # whatever else is already there joins this frame (a socket buffer holds ~200 KiB)
            while HEADROOM + count < len(buffer):
                try:
                    more = sock.recv_into(view[HEADROOM + count :])
                except (BlockingIOError, InterruptedError):
                    break
                if not more:
                    eof = True
                    break
                count += more
            header = b"\x0a" + _varint(count)
            start = HEADROOM - len(header)
            view[start:HEADROOM] = header
            await call.write(bytes(view[start : HEADROOM + count]))
        await call.write(GOAWAY_FRAME)
        await call.done_writing()

    async def inbound() -> None:
        if inbound_first:
            await loop.sock_sendall(sock, inbound_first)
        while (message := await call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
            kind, payload = decode(message)
            if kind == DATA:
                if payload:
                    await loop.sock_sendall(sock, payload)
            elif kind == GOAWAY:
                break
            elif kind == RST:
                raise StreamClosedError("routed connection reset by the other side")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(outbound())
            tg.create_task(inbound())
        # cancelling now could discard frames the router has not read yet: wait for its "done"
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_GRACE):
                await call.code()
    except BaseExceptionGroup as group:
        raise _first(group) from None
    finally:
        call.cancel()
        sock.close()


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    """The one error to report from a failed tunnel (a call failure says more than a socket one)."""
    flat: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            flat.append(exc)

    walk(group)
    for exc in flat:
        if isinstance(exc, grpc.RpcError | StreamClosedError):
            return exc
    return flat[0]
