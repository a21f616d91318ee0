"""The data plane: routed connections whose bytes the router only splices.

A routed connection reaches the exporter through the router one of two ways:

- `RouterService.Stream` (upstream's protocol, always there): the connection's bytes travel in
  gRPC frames over TLS to the router, which relays the frames (`streams.tunnel`).
- the router's **data port** (ours): each side opens a plain TCP connection to the port and
  introduces it with one line, `JMPDATA/1 <stream token>\\n`. Once both sides of the token are
  there the router answers `OK\\n` to each (or `ERR <why>\\n` and closes) and from then on splices
  bytes between the two sockets (in the kernel, `os.splice`), never looking at them.

Only end-to-end TLS sessions travel over the data port: the client's gRPC channel speaks mutual
TLS with the exporter's session server (session certificates from the controller), and the client
side asks for the data port only for a connection whose first byte is a TLS handshake record. So
the port never carries readable bytes, and a token read off the wire gets no one past the
exporter's client-certificate check. The controller puts the data port's address in the stream
token (claim `dp`) when the client asked for it on `Dial` and the chosen router has one; both ends
read it from the token they already have.

Cost: the endpoints hand bytes between their sockets with `os.splice` in two threads per
connection (no copy through Python, no frame encoding), and TLS happens once per direction,
inside gRPC's C core at the two ends, as in direct mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable

from jumpstarter.errors import StreamClosedError

log = logging.getLogger("jumpstarter.dataplane")

#: The line that introduces a data-port connection: PREFACE + token + b"\n".
PREFACE = b"JMPDATA/1 "
#: Longest introduction or answer line accepted.
MAX_LINE = 16 << 10
#: The router's answer once both sides are there.
OK = b"OK\n"
#: First byte of a TLS handshake record: a connection starting with it is a TLS session.
TLS_HANDSHAKE = 0x16
#: Token claim holding the data port's HOST:PORT.
CLAIM = "dp"
#: Dial request metadata asking for the data port (value "1").
REQUEST_METADATA = "x-jumpstarter-data-plane"
#: Seconds to wait for the data port to accept a TCP connection (then: unreachable).
CONNECT_TIMEOUT = 5.0
#: Bytes moved per splice call (and the pipe's size, where the system allows it).
CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031
_SPLICE: Callable[[int, int, int], int] | None = getattr(os, "splice", None)


class DataPortError(StreamClosedError):
    """The router's data port could not be reached or refused the connection."""


def is_tls(first: bytes) -> bool:
    """Whether a connection that began with `first` is a TLS session."""
    return bool(first) and first[0] == TLS_HANDSHAKE


def data_endpoint(token: str) -> str | None:
    """The data port (HOST:PORT) a stream token sends its sides to, if any. The token is not
    verified here: the router does that; a forged claim only sends a side somewhere that refuses it."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    value = claims.get(CLAIM)
    return value if isinstance(value, str) and value else None


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


async def read_line(sock: socket.socket, what: str) -> tuple[bytes, bytes]:
    """(line without its newline, bytes after it) from a non-blocking socket."""
    loop = asyncio.get_running_loop()
    buffer = b""
    while b"\n" not in buffer:
        if len(buffer) > MAX_LINE:
            raise DataPortError(f"{what} sent an over-long line")
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise DataPortError(f"{what} closed the connection")
        buffer += chunk
    line, _, rest = buffer.partition(b"\n")
    return line, rest


async def open_data_connection(endpoint: str, token: str, patience: float) -> tuple[socket.socket, bytes]:
    """Connect to the data port at `endpoint` with `token` and wait (up to `patience` seconds) for
    the other side; returns the socket and any bytes that already followed the router's OK."""
    loop = asyncio.get_running_loop()
    host, port = _split(endpoint)
    sock: socket.socket | None = None
    connected = False
    try:
        async with asyncio.timeout(patience):
            async with asyncio.timeout(min(patience, CONNECT_TIMEOUT)):  # a firewalled port: give up soon
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                family, kind, proto, _, address = infos[0]
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, address)
            connected = True
            await loop.sock_sendall(sock, PREFACE + token.encode() + b"\n")
            line, rest = await read_line(sock, f"the router's data port at {endpoint}")
    except BaseException as exc:
        if sock is not None:
            sock.close()
        if isinstance(exc, TimeoutError) and not connected:
            raise DataPortError(f"cannot reach the router's data port at {endpoint}: no answer in time") from None
        if isinstance(exc, TimeoutError):
            raise DataPortError(f"the router's data port at {endpoint} did not pair the connection in time") from None
        if isinstance(exc, OSError):
            raise DataPortError(f"cannot reach the router's data port at {endpoint}: {exc}") from None
        raise
    if line + b"\n" != OK:
        sock.close()
        reason = line.removeprefix(b"ERR ").decode(errors="replace")
        raise DataPortError(f"the router refused the connection: {reason}")
    return sock, rest


def _copy(
    source: socket.socket, target: socket.socket, splice: Callable[[int, int, int], int] | None = _SPLICE
) -> None:
    """Move bytes until `source` ends: spliced in the kernel, or copied where splice is missing
    (`splice=None` takes the copy path, as on systems without `os.splice`)."""
    if splice is not None:
        read_end, write_end = os.pipe()
        try:
            with contextlib.suppress(OSError):
                import fcntl

                fcntl.fcntl(write_end, _F_SETPIPE_SZ, CHUNK)
            while count := splice(source.fileno(), write_end, CHUNK):
                while count:
                    count -= splice(read_end, target.fileno(), count)
            return
        except OSError as exc:
            if exc.errno != 22:  # EINVAL: this pair of descriptors cannot be spliced; copy instead
                raise
        finally:
            os.close(read_end)
            os.close(write_end)
    buffer = memoryview(bytearray(CHUNK))
    while count := source.recv_into(buffer):
        target.sendall(buffer[:count])


def _finish(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _cut(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


async def pump(left: socket.socket, right: socket.socket, *, to_right: bytes = b"", to_left: bytes = b"") -> None:
    """Carry bytes both ways between two connected sockets until both directions have ended
    (`to_right`/`to_left`: bytes already read, sent first). The end of one direction is passed on
    as a half-close; a failure (or cancellation) cuts both. Closes both sockets."""
    loop = asyncio.get_running_loop()
    failures: list[BaseException] = []

    def run(source: socket.socket, target: socket.socket, first: bytes, done: asyncio.Future[None]) -> None:
        try:
            if first:
                target.sendall(first)
            _copy(source, target)
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)
        except OSError as exc:
            failures.append(exc)
            _cut(source, target)
        finally:
            loop.call_soon_threadsafe(_finish, done)

    directions = []
    for sock in (left, right):
        sock.setblocking(True)
    for source, target, first in ((left, right, to_right), (right, left, to_left)):
        done: asyncio.Future[None] = loop.create_future()
        directions.append(done)
        threading.Thread(target=run, args=(source, target, first, done), name="jmp-pump", daemon=True).start()
    try:
        await asyncio.wait(directions)  # not gather: cancelling gather cancels `directions` too
    except asyncio.CancelledError:
        _cut(left, right)  # the threads see their sockets end and stop
        # closing a socket a thread still uses could hit a reused fd: wait for them, even when
        # cancelled again meanwhile (they end at once now)
        while not all(direction.done() for direction in directions):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait(directions)
        raise
    finally:
        left.close()
        right.close()
    if failures:
        raise StreamClosedError(f"routed connection broken: {failures[0]}")
