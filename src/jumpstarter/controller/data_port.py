"""The router's data port: plain TCP connections paired by stream token and spliced
(`streams.dataplane` describes the protocol and why only end-to-end TLS sessions use it).

A connection introduces itself with `JMPDATA/1 <token>`; the token is checked exactly as
`RouterService.Stream` checks it (signature, lease still active, not used before: a stream id
pairs once, over either transport). The first side waits up to the router's pairing timeout for
the second; both then get `OK` and the port moves bytes between them until both directions end.
When the lease ends, `close_lease` cuts every connection of it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field

from jumpstarter.controller.router import Router
from jumpstarter.errors import UnauthenticatedError
from jumpstarter.streams.dataplane import OK, PREFACE, DataPortError, pump, read_line

log = logging.getLogger("jumpstarter.router.data")

#: Seconds a new connection has to introduce itself.
INTRODUCTION_TIMEOUT = 10.0


@dataclass(eq=False, slots=True)
class _Side:
    sock: socket.socket
    early: bytes  # bytes that followed the introduction
    partner: asyncio.Future[_Side] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    finished: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class DataPort:
    """Accepts, pairs and splices data-port connections for one `Router`."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._waiting: dict[str, _Side] = {}
        self._by_lease: dict[str, set[socket.socket]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: socket.socket | None = None
        router.lease_closers.append(self.close_lease)

    @property
    def connections(self) -> int:
        """Sockets open on the port (waiting or spliced)."""
        return sum(len(socks) for socks in self._by_lease.values())

    def listen(self, host: str, port: int) -> int:
        """Bind the port (0: any free one); returns the port number."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.bind((host, port))
            listener.listen(512)
        except OSError:
            listener.close()
            raise
        listener.setblocking(False)
        self._listener = listener
        bound: int = listener.getsockname()[1]
        return bound

    async def serve(self) -> None:
        """Accept connections until cancelled (then cut them all)."""
        assert self._listener is not None, "listen() first"
        loop = asyncio.get_running_loop()
        try:
            while True:
                sock, _ = await loop.sock_accept(self._listener)
                sock.setblocking(False)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                task = asyncio.ensure_future(self._handle(sock))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            self._listener.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def close_lease(self, lease: str, reason: str) -> None:
        """Cut every connection of lease `namespace/name` now."""
        socks = self._by_lease.pop(lease, set())
        if socks:
            log.info("closing %d data-port connection(s) of lease %s: %s", len(socks), lease, reason)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    async def _refuse(self, sock: socket.socket, reason: str) -> None:
        log.debug("data-port connection refused: %s", reason)
        with contextlib.suppress(OSError):
            await asyncio.get_running_loop().sock_sendall(sock, b"ERR " + reason.encode() + b"\n")
        sock.close()

    async def _handle(self, sock: socket.socket) -> None:
        try:
            async with asyncio.timeout(INTRODUCTION_TIMEOUT):
                line, early = await read_line(sock, "the connection")
        except (TimeoutError, DataPortError, OSError):
            sock.close()
            return
        if not line.startswith(PREFACE):
            await self._refuse(sock, "not a data-port introduction")
            return
        router = self.router
        try:
            grant = router.verifier.verify(line[len(PREFACE) :].decode(errors="replace").strip())
        except UnauthenticatedError as exc:
            await self._refuse(sock, f"unauthenticated: {exc}")
            return
        refusal = await router.gate.refusal(grant.lease)
        if refusal is not None:
            await self._refuse(sock, f"stream token refused: {refusal}")
            return
        if router.is_spent(grant.stream_id):
            await self._refuse(sock, "stream token already used: dial again")
            return
        side = _Side(sock, early)
        socks = self._by_lease.setdefault(grant.lease, set())
        socks.add(sock)
        try:
            first = self._waiting.pop(grant.stream_id, None)
            if first is None:
                await self._wait_for_partner(grant.stream_id, grant.expiry, side)
            else:
                await self._splice(first, side, grant.stream_id, grant.expiry)
        except Exception as exc:  # a side went away: the pump has cut both
            log.debug("data-port connection of lease %s ended: %s", grant.lease, exc)
        finally:
            sock.close()
            socks.discard(sock)
            if not socks and self._by_lease.get(grant.lease) is socks:
                del self._by_lease[grant.lease]

    async def _wait_for_partner(self, stream_id: str, expiry: float, side: _Side) -> None:
        """First side: wait for the second, then until the bytes stop (the second side's task
        moves them)."""
        self._waiting[stream_id] = side
        try:
            async with asyncio.timeout(self.router.pairing_timeout):
                await asyncio.shield(side.partner)
        except TimeoutError:
            await self._refuse(side.sock, "the other side of the stream never connected")
            return
        finally:
            if self._waiting.get(stream_id) is side:
                del self._waiting[stream_id]
                self.router.spend(stream_id, expiry)  # abandoned: a late peer must not wait in vain
        await side.finished

    async def _splice(self, first: _Side, second: _Side, stream_id: str, expiry: float) -> None:
        """Second side: tell both they are paired, then move bytes until both directions end."""
        self.router.spend(stream_id, expiry)
        first.partner.set_result(second)
        try:
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(first.sock, OK)
            await loop.sock_sendall(second.sock, OK)
            self.router.pairs_total += 1
            await pump(first.sock, second.sock, to_right=first.early, to_left=second.early)
        finally:
            if not first.finished.done():
                first.finished.set_result(None)


def parse_address(value: str | None, address: str) -> tuple[str, int] | None:
    """Where to bind the data port: `value` is `[HOST:]PORT`, `off` (no data port: None) or empty
    (a free port on the host of the router's own listening `address`)."""
    from jumpstarter.errors import ConfigurationError

    if value is not None and value.strip().lower() == "off":
        return None
    default_host = address.rsplit(":", 1)[0].strip("[]") or "0.0.0.0"
    if not value:
        return default_host, 0
    host, _, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ConfigurationError(f"data port must be [HOST:]PORT or off, not {value!r}") from None
    if not 0 <= number < 65536:
        raise ConfigurationError(f"data port {number} is out of range")
    return (host.strip("[]") or default_host), number


def public_endpoint(router_endpoint: str, port: int) -> str:
    """Where clients and exporters reach the data port: the router's public host, this port."""
    host = router_endpoint.rsplit(":", 1)[0]
    return f"{host}:{port}"
