"""Open a client tree on an exporter address (unix socket path or host:port)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from google.protobuf import empty_pb2

from jumpstarter.client.base import DriverClient
from jumpstarter.client.calls import error_from_rpc
from jumpstarter.client.connection import Connection
from jumpstarter.client.tree import build_tree
from jumpstarter.wire.values import CODEC_KEY, CODEC_VERSION


def _speaks_tags(initial_metadata: Any) -> bool:
    return any(k == CODEC_KEY and v == CODEC_VERSION for k, v in initial_metadata or ())


def _is_tcp(address: str) -> bool:
    return not (address.startswith(("/", ".", "unix:")))


def _reach_error(exc: BaseException, address: str) -> BaseException:
    """Name the address in connection failures."""
    from jumpstarter.errors import ConnectionLostError

    translated = error_from_rpc(exc) or exc
    if isinstance(translated, ConnectionLostError):
        detail = str(translated).removeprefix("connection to the exporter lost: ")
        return ConnectionLostError(f"cannot reach exporter at {address}: {detail}")
    if isinstance(translated, TimeoutError):
        return TimeoutError(f"exporter at {address} did not answer in time")
    return translated


@contextmanager
def client_from_path(
    path: str,
    portal: Any,
    *,
    allow: list[str] | tuple[str, ...] = (),
    unsafe: bool = False,
    timeout: float = 30.0,
    **kwargs: Any,
) -> Iterator[DriverClient]:
    """Connect to an exporter (unix socket path, or `host:port` with `credentials`/metadata for
    direct mode) from synchronous code; `portal` runs the async parts."""
    connection = Connection(path, portal=portal, **kwargs)
    try:
        stub = connection.exporter_stub()
        try:
            # a unix socket may still be coming up; a TCP address that refuses should fail at once
            report, call = stub.GetReport.with_call(
                empty_pb2.Empty(),
                wait_for_ready=not _is_tcp(path),
                timeout=timeout,
                metadata=connection.metadata(()),
            )
        except Exception as exc:
            raise _reach_error(exc, path) from None
        connection.tagged = _speaks_tags(call.initial_metadata())
        yield build_tree(report, connection, allow=allow, unsafe=unsafe)
    finally:
        connection.close()


@asynccontextmanager
async def client_from_path_async(
    path: str, *, allow: list[str] | tuple[str, ...] = (), unsafe: bool = False, portal: Any = None, **kwargs: Any
) -> AsyncIterator[DriverClient]:
    """Connect to an exporter from async code running on the current event loop."""
    connection = Connection(path, portal=portal, loop=asyncio.get_running_loop(), **kwargs)
    try:
        export, _ = connection.aio_stubs()
        call = export.GetReport(
            empty_pb2.Empty(), wait_for_ready=not _is_tcp(path), timeout=30, metadata=connection.metadata(())
        )
        try:
            report = await call
            connection.tagged = _speaks_tags(await call.initial_metadata())
        except Exception as exc:
            raise _reach_error(exc, path) from None
        yield build_tree(report, connection, allow=allow, unsafe=unsafe)
    finally:
        await connection.aclose_async_channels()
        if connection.portal is None:
            connection.stack.close()


@contextmanager
def client_from_target(
    target: Any,
    portal: Any,
    *,
    allow: list[str] | tuple[str, ...] = (),
    unsafe: bool = False,
    interactive: bool | None = None,
) -> Iterator[DriverClient]:
    """Connect to a direct-mode exporter described by a `client.direct.DirectTarget`. The client
    holds the exporter (one client at a time) until the block exits."""
    from jumpstarter.client.direct import credentials
    from jumpstarter.client.logs import hold_session

    creds, options = credentials(target, interactive=interactive)
    with client_from_path(
        target.address,
        portal,
        allow=allow,
        unsafe=unsafe,
        timeout=10.0,
        credentials=creds,
        channel_options=options,
        call_credentials_metadata=target.metadata(),
    ) as client, portal.wrap_async_context_manager(hold_session(client)):
        yield client
