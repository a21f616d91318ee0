"""Adapters: local listeners forwarding each accepted connection to a driver byte stream.

    with TcpPortforwardAdapter(client=client.tcp) as (host, port):
        requests.get(f"http://{host}:{port}/")        # reaches the device's web server

Every accepted connection opens its own driver stream (`client.stream_async(method)`), so
connections are independent: one closing, stalling or failing leaves the others alone. The
port-forward adapters work with `with` (sync code; they run on the client's portal) and `async with`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from functools import partial
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import SocketAttribute

from jumpstarter.errors import StreamClosedError

__all__ = ["PexpectAdapter", "TcpPortforwardAdapter", "UnixPortforwardAdapter", "forward_stream"]

log = logging.getLogger("jumpstarter_driver_network.adapters")

T = TypeVar("T")

#: Largest read from a local socket (asyncio hands over at most 256 KiB per wake-up anyway).
READ_SIZE = 1 << 20


class _Adapter(Generic[T]):
    """An async context manager factory usable with `async with` or, through the client's portal,
    with plain `with`."""

    def __init__(self, client: Any, factory: Callable[[], AbstractAsyncContextManager[T]]) -> None:
        self._client = client
        self._factory = factory
        self._async: AbstractAsyncContextManager[T] | None = None
        self._sync: AbstractContextManager[T] | None = None

    def __enter__(self) -> T:
        portal = getattr(self._client, "portal", None)
        if portal is None:
            raise RuntimeError("this client has no blocking portal (it was opened from async code): use `async with`")
        self._sync = portal.wrap_async_context_manager(self._factory())
        return self._sync.__enter__()

    def __exit__(self, *exc_info: Any) -> bool | None:
        assert self._sync is not None
        manager, self._sync = self._sync, None
        return manager.__exit__(*exc_info)

    async def __aenter__(self) -> T:
        self._async = self._factory()
        return await self._async.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._async is not None
        manager, self._async = self._async, None
        return await manager.__aexit__(*exc_info)


def TcpPortforwardAdapter(
    *,
    client: Any,
    method: str = "connect",
    local_host: str = "127.0.0.1",
    local_port: int = 0,
    reuse_port: bool = False,
) -> _Adapter[tuple[str, int]]:
    """Listen on `local_host`:`local_port` (0: any free port) and forward every connection to the
    driver's `method` stream; yields the listening (host, port)."""
    return _Adapter(client, partial(_tcp_portforward, client, method, local_host, local_port, reuse_port))


def UnixPortforwardAdapter(
    *, client: Any, method: str = "connect", path: str | os.PathLike[str] | None = None
) -> _Adapter[str]:
    """Listen on the unix socket `path` (default: a new one in a private temporary directory) and
    forward every connection to the driver's `method` stream; yields the socket path."""
    return _Adapter(client, partial(_unix_portforward, client, method, path))


@asynccontextmanager
async def _tcp_portforward(
    client: Any, method: str, local_host: str, local_port: int, reuse_port: bool
) -> AsyncIterator[tuple[str, int]]:
    listener = await anyio.create_tcp_listener(local_host=local_host, local_port=local_port, reuse_port=reuse_port)
    address: Any = listener.extra(SocketAttribute.local_address)
    host, port = address[:2]
    async with _serving(listener, client, method):
        yield str(host), int(port)


@asynccontextmanager
async def _unix_portforward(client: Any, method: str, path: str | os.PathLike[str] | None) -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory(prefix="jmp-forward-") as tmp:
        where = os.fspath(path) if path is not None else os.path.join(tmp, "socket")
        listener = await anyio.create_unix_listener(where)
        try:
            async with _serving(listener, client, method):
                yield where
        finally:
            try:
                os.unlink(where)
            except FileNotFoundError:
                pass


@asynccontextmanager
async def _serving(listener: Any, client: Any, method: str) -> AsyncIterator[None]:
    """Accept connections on `listener` until the block ends; then close them all."""
    raised: BaseException | None = None
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, partial(_forward_connection, client, method), tg)
        try:
            yield
        except BaseException as exc:  # re-raised below as is: inside the task group it would be wrapped in a group
            raised = exc
        tg.cancel_scope.cancel()
    if raised is not None:
        raise raised


async def _forward_connection(client: Any, method: str, conn: Any) -> None:
    """Carry one accepted connection over its own driver stream."""
    async with conn:
        try:
            async with client.stream_async(method) as stream:
                await forward_stream(conn, stream)
        except Exception as exc:  # one connection failing must not stop the listener
            log.warning("forwarded connection to %s closed: %s", client.name or "driver", exc)


async def forward_stream(a: Any, b: Any) -> None:
    """Copy bytes both ways between two streams until both directions have ended; end-of-data is
    passed on as `send_eof`. A direction failing (reset, closed) ends both."""
    async with anyio.create_task_group() as tg:

        async def copy(source: Any, sink: Any) -> None:
            receive = partial(source.receive, READ_SIZE) if _takes_size(source) else source.receive
            send = sink.send
            try:
                while True:
                    try:
                        data = await receive()
                    except anyio.EndOfStream:
                        break
                    await send(data)
                send_eof = getattr(sink, "send_eof", None)
                if send_eof is not None:
                    await send_eof()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, StreamClosedError, OSError) as exc:
                log.debug("forwarding stopped: %r", exc)
                tg.cancel_scope.cancel()

        tg.start_soon(copy, a, b)
        tg.start_soon(copy, b, a)


def _takes_size(stream: Any) -> bool:
    from anyio.abc import ByteReceiveStream

    return isinstance(stream, ByteReceiveStream)


@contextmanager
def PexpectAdapter(*, client: Any, method: str = "connect", **spawn_options: Any) -> Iterator[Any]:
    """A `pexpect.fdpexpect.fdspawn` on the driver's `method` stream (a serial console, a telnet
    port, ...) for `expect`/`sendline` scripts; `spawn_options` go to `fdspawn` (`timeout`,
    `encoding`, `logfile`, ...). Synchronous code only, like pexpect itself.

    The driver stream is open when the block starts (nothing the device sends from then on is
    missed); a socket pair bridges it to the descriptor pexpect reads and writes.
    """
    import socket
    import threading

    from pexpect.fdpexpect import fdspawn

    with client.stream(method) as stream:
        ours, theirs = socket.socketpair()

        def to_device() -> None:
            try:
                while data := theirs.recv(READ_SIZE):
                    stream.send(data)
                stream.send_eof()
            except Exception as exc:  # the stream closed under us: the block is ending
                log.debug("pexpect bridge to the driver stopped: %r", exc)

        def from_device() -> None:
            try:
                for chunk in stream:
                    theirs.sendall(chunk)
                theirs.shutdown(socket.SHUT_WR)  # pexpect sees EOF
            except Exception as exc:
                log.debug("pexpect bridge from the driver stopped: %r", exc)

        threads = [
            threading.Thread(target=f, daemon=True, name=f"pexpect-{f.__name__}") for f in (to_device, from_device)
        ]
        for thread in threads:
            thread.start()
        spawn = fdspawn(ours.detach(), **spawn_options)  # the spawn owns (and closes) its descriptor
        try:
            yield spawn
        finally:
            if not spawn.closed:
                spawn.close()  # to_device sees end of input and ends
            threads[0].join()
    threads[1].join(timeout=10)  # the stream is closed, so from_device ends
    if not threads[1].is_alive():
        theirs.close()
