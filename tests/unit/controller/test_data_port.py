"""The router's data port on a real loopback listener with real sockets: pairing by stream token,
exact bytes both ways with half-close, early bytes, refusals, closing a lease; the byte pump and
`_copy` (splice and copy paths); address parsing and the token's `dp` claim."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from jumpstarter.controller.auth import TokenAuthority
from jumpstarter.controller.data_port import DataPort, parse_address, public_endpoint
from jumpstarter.controller.router import Router
from jumpstarter.controller.store.sqlite import SqliteStore
from jumpstarter.controller.stream_tokens import StreamTokenVerifier, mint
from jumpstarter.errors import ConfigurationError
from jumpstarter.streams.dataplane import OK, PREFACE, DataPortError, _copy, data_endpoint, open_data_connection, pump

LEASE = "default/lease1"
PATIENCE = 5.0


class Gate:
    """A lease gate that answers at once: every lease is active except those in `refused`."""

    def __init__(self) -> None:
        self.refused: set[str] = set()

    async def refusal(self, lease: str) -> str | None:
        return f"lease {lease} is not active" if lease in self.refused else None


class Port:
    """A router's data port listening on 127.0.0.1 (port 0), served in a task."""

    def __init__(self, authority: TokenAuthority, pairing_timeout: float) -> None:
        self.authority = authority
        self.gate = Gate()
        self.router = Router(StreamTokenVerifier(authority.verification_keys()), self.gate, pairing_timeout)
        self.data_port = DataPort(self.router)
        self.endpoint = f"127.0.0.1:{self.data_port.listen('127.0.0.1', 0)}"

    def token(self, lease: str = "lease1") -> str:
        return mint(self.authority, "default", lease)[0]

    async def open(self, token: str) -> tuple[socket.socket, bytes]:
        return await open_data_connection(self.endpoint, token, PATIENCE)

    async def raw(self, first: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A plain connection that has sent `first`."""
        host, _, port = self.endpoint.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(first)
        await writer.drain()
        return reader, writer


@asynccontextmanager
async def serving(authority: TokenAuthority, pairing_timeout: float = 5.0) -> AsyncIterator[Port]:
    port = Port(authority, pairing_timeout)
    task = asyncio.ensure_future(port.data_port.serve())
    try:
        yield port
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def authority(tmp_path: Path) -> TokenAuthority:
    return TokenAuthority(SqliteStore.in_directory(tmp_path))


@pytest.fixture
async def port(authority: TokenAuthority) -> AsyncIterator[Port]:
    async with serving(authority) as running:
        yield running


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for `condition` to hold, failing after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def read_all(sock: socket.socket, already: bytes = b"") -> bytes:
    """Everything `sock` receives until EOF (after the bytes `already` read)."""
    loop = asyncio.get_running_loop()
    chunks = [already]
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), PATIENCE):
        chunks.append(chunk)
    return b"".join(chunks)


async def recv_exactly(sock: socket.socket, size: int, already: bytes = b"") -> bytes:
    loop = asyncio.get_running_loop()
    buffer = already
    while len(buffer) < size:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, size - len(buffer)), PATIENCE)
        assert chunk, f"connection ended after {len(buffer)} of {size} bytes"
        buffer += chunk
    return buffer


async def has_ended(sock: socket.socket) -> bool:
    """Whether `sock` sees its connection end (EOF or reset) within PATIENCE."""
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 4096), PATIENCE) == b""
    except ConnectionResetError:
        return True


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- pairing and moving bytes ------------------------------------------------------------------

@pytest.mark.anyio
async def test_paired_sides_exchange_exact_bytes_and_half_close(port: Port) -> None:
    loop = asyncio.get_running_loop()
    token = port.token()
    (client, client_rest), (exporter, exporter_rest) = await asyncio.gather(port.open(token), port.open(token))
    assert port.data_port.connections == 2 and port.router.pairs_total == 1
    upload = os.urandom(4 << 20)

    async def send_and_half_close() -> None:
        await loop.sock_sendall(client, upload)
        client.shutdown(socket.SHUT_WR)

    _, received = await asyncio.gather(send_and_half_close(), read_all(exporter, exporter_rest))
    assert len(received) == len(upload) and digest(received) == digest(upload)  # ...and then EOF

    answer = os.urandom(256 << 10)  # the other direction still works after the half-close
    await loop.sock_sendall(exporter, answer)
    exporter.shutdown(socket.SHUT_WR)
    assert digest(await read_all(client, client_rest)) == digest(answer)

    client.close()
    exporter.close()
    await until(lambda: port.data_port.connections == 0)


@pytest.mark.anyio
async def test_bytes_sent_with_the_introduction_reach_the_late_peer(port: Port) -> None:
    token = port.token()
    reader, writer = await port.raw(PREFACE + token.encode() + b"\n" + b"hello")
    try:
        await until(lambda: port.data_port.connections == 1)  # waiting as the first side
        peer, rest = await port.open(token)
        try:
            assert await asyncio.wait_for(reader.readline(), PATIENCE) == OK
            assert await recv_exactly(peer, 5, rest) == b"hello"
        finally:
            peer.close()
    finally:
        writer.close()


# ---- refusals ----------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_a_garbage_introduction_is_refused(port: Port) -> None:
    reader, writer = await port.raw(b"GET / HTTP/1.1\r\n")
    try:
        assert await asyncio.wait_for(reader.readline(), PATIENCE) == b"ERR not a data-port introduction\n"
        assert await asyncio.wait_for(reader.read(), PATIENCE) == b""  # and closed
    finally:
        writer.close()


@pytest.mark.anyio
async def test_a_forged_token_is_refused_as_unauthenticated(port: Port) -> None:
    with pytest.raises(DataPortError, match="refused the connection: unauthenticated"):
        await port.open(port.token()[:-4] + "AAAA")
    with pytest.raises(DataPortError, match="refused the connection: unauthenticated"):
        await port.open("not-a-jwt")


@pytest.mark.anyio
async def test_a_token_of_a_refused_lease_is_refused(port: Port) -> None:
    port.gate.refused.add("default/lease2")
    with pytest.raises(DataPortError, match=r"refused the connection: stream token refused: lease default/lease2"):
        await port.open(port.token("lease2"))


@pytest.mark.anyio
async def test_a_token_pairs_only_once(port: Port) -> None:
    token = port.token()
    (first, _), (second, _) = await asyncio.gather(port.open(token), port.open(token))
    try:
        with pytest.raises(DataPortError, match="refused the connection: stream token already used"):
            await port.open(token)
    finally:
        first.close()
        second.close()


@pytest.mark.anyio
async def test_a_lone_side_is_refused_after_the_pairing_timeout(authority: TokenAuthority) -> None:
    async with serving(authority, pairing_timeout=0.3) as port:
        token = port.token()
        started = time.monotonic()
        with pytest.raises(DataPortError, match="refused the connection: the other side of the stream never connected"):
            await port.open(token)
        assert time.monotonic() - started < PATIENCE
        with pytest.raises(DataPortError, match="already used"):  # the abandoned token is spent
            await port.open(token)
        await until(lambda: port.data_port.connections == 0)


@pytest.mark.anyio
async def test_closing_the_lease_cuts_a_spliced_pair(port: Port) -> None:
    loop = asyncio.get_running_loop()
    token = port.token()
    (client, _), (exporter, rest) = await asyncio.gather(port.open(token), port.open(token))
    try:
        await loop.sock_sendall(client, b"ping")
        assert await recv_exactly(exporter, 4, rest) == b"ping"  # spliced
        port.router.close_lease(LEASE, "expired")
        assert await has_ended(client)
        assert await has_ended(exporter)
        assert port.data_port.connections == 0
    finally:
        client.close()
        exporter.close()


# ---- the pump and _copy ------------------------------------------------------------------------

def pump_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "jmp-pump"]


@pytest.mark.anyio
async def test_cancelling_the_pump_closes_both_sockets_and_stops_its_threads() -> None:
    outer_left, left = socket.socketpair()
    right, outer_right = socket.socketpair()
    try:
        task = asyncio.ensure_future(pump(left, right, to_right=b"early"))
        outer_left.sendall(b"-then")
        received = b""
        while len(received) < 10:
            chunk = await asyncio.wait_for(asyncio.to_thread(outer_right.recv, 64), PATIENCE)
            assert chunk
            received += chunk
        assert received == b"early-then"  # both threads are pumping
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, PATIENCE)
        assert left.fileno() == -1 and right.fileno() == -1
        assert await asyncio.to_thread(outer_left.recv, 64) == b""  # the far ends see the cut
        assert await asyncio.to_thread(outer_right.recv, 64) == b""
        await until(lambda: not pump_threads())
    finally:
        for sock in (outer_left, left, right, outer_right):
            sock.close()


@pytest.mark.parametrize("cancels", [1, 3])
def test_a_cancelled_pump_returns_only_after_its_threads_are_done(cancels: int) -> None:
    """Cancelled at once (before its threads have started copying), even again while it cleans up,
    the pump must still wait for them: else they outlive it, may touch closed (reused) fds and
    report to a closed loop."""
    failures: list[BaseException | None] = []

    async def cancel_at_once() -> None:
        outer_left, left = socket.socketpair()
        right, outer_right = socket.socketpair()
        with outer_left, outer_right:
            task = asyncio.ensure_future(pump(left, right))
            await asyncio.sleep(0)
            task.cancel()
            for _ in range(cancels - 1):
                await asyncio.sleep(0)
                task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    previous = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value)
    try:
        for _ in range(10):
            asyncio.run(cancel_at_once())  # the loop closes as soon as the pump has returned
        deadline = time.monotonic() + PATIENCE
        for thread in pump_threads():
            thread.join(max(0.0, deadline - time.monotonic()))
    finally:
        threading.excepthook = previous
    assert failures == []
    assert not pump_threads()


def copy_through(splice: Callable[[int, int, int], int] | None, payload: bytes) -> bytes:
    """`payload` written into one socketpair, `_copy`'d to another, read out of it."""
    writer, source = socket.socketpair()
    target, reader = socket.socketpair()
    with writer, source, target, reader, ThreadPoolExecutor(2) as pool:

        def write() -> None:
            writer.sendall(payload)
            writer.shutdown(socket.SHUT_WR)

        def copy() -> None:
            _copy(source, target, splice)
            target.shutdown(socket.SHUT_WR)

        writing, copying = pool.submit(write), pool.submit(copy)
        reader.settimeout(PATIENCE)
        chunks = []
        while chunk := reader.recv(1 << 16):
            chunks.append(chunk)
        writing.result(PATIENCE)
        copying.result(PATIENCE)
        return b"".join(chunks)


@pytest.mark.skipif(not hasattr(os, "splice"), reason="no os.splice on this system")
def test_copy_moves_every_byte_with_splice() -> None:
    calls = 0

    def counting_splice(source: int, target: int, count: int) -> int:
        nonlocal calls
        calls += 1
        return os.splice(source, target, count)

    payload = os.urandom(3 << 20)
    assert digest(copy_through(counting_splice, payload)) == digest(payload)
    assert calls >= 2  # into the pipe and out of it: the splice path did the work


def test_copy_moves_every_byte_without_splice() -> None:
    payload = os.urandom(3 << 20)
    assert digest(copy_through(None, payload)) == digest(payload)


# ---- addresses and the token's claim -----------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "address", "expected"),
    [
        ("off", "127.0.0.1:8083", None),
        ("OFF", "127.0.0.1:8083", None),
        (None, "127.0.0.1:8083", ("127.0.0.1", 0)),
        ("", "127.0.0.1:8083", ("127.0.0.1", 0)),
        (None, ":8083", ("0.0.0.0", 0)),
        ("9000", "10.1.2.3:8083", ("10.1.2.3", 9000)),
        ("127.0.0.1:9000", "0.0.0.0:8083", ("127.0.0.1", 9000)),
        ("[::1]:9000", "0.0.0.0:8083", ("::1", 9000)),
    ],
)
def test_parse_address(value: str | None, address: str, expected: tuple[str, int] | None) -> None:
    assert parse_address(value, address) == expected


@pytest.mark.parametrize("value", ["x", "70000"])
def test_parse_address_rejects_a_bad_port(value: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_address(value, "127.0.0.1:8083")


def test_public_endpoint_is_the_router_host_with_the_data_port() -> None:
    assert public_endpoint("router.example:8083", 9000) == "router.example:9000"


def test_data_endpoint_reads_the_dp_claim(authority: TokenAuthority) -> None:
    assert data_endpoint(mint(authority, "default", "lease1", data_endpoint="h:1")[0]) == "h:1"
    assert data_endpoint(mint(authority, "default", "lease1")[0]) is None
    assert data_endpoint("garbage") is None


@pytest.mark.anyio
async def test_a_port_that_never_answers_is_unreachable_soon() -> None:
    # a listener whose backlog is full drops further connection attempts (as a firewall would)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    endpoint = f"127.0.0.1:{listener.getsockname()[1]}"
    queued = []
    try:
        for _ in range(4):
            extra = socket.socket()
            extra.setblocking(False)
            extra.connect_ex(listener.getsockname())
            queued.append(extra)
        with pytest.raises(DataPortError, match=r"cannot reach the router's data port .* no answer in time"):
            await open_data_connection(endpoint, "token", 0.5)  # the connect, not the pairing, timed out
    finally:
        for sock in (*queued, listener):
            sock.close()
