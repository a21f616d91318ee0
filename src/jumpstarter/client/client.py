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


@contextmanager
def client_from_path(
    path: str, portal: Any, *, allow: list[str] | tuple[str, ...] = (), unsafe: bool = False, **kwargs: Any
) -> Iterator[DriverClient]:
    """Connect to an exporter from synchronous code; `portal` runs the async parts."""
    connection = Connection(path, portal=portal, **kwargs)
    try:
        stub = connection.exporter_stub()
        try:
            report, call = stub.GetReport.with_call(empty_pb2.Empty(), wait_for_ready=True, timeout=30)
        except Exception as exc:
            raise (error_from_rpc(exc) or exc) from None
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
        call = export.GetReport(empty_pb2.Empty(), wait_for_ready=True, timeout=30)
        try:
            report = await call
            connection.tagged = _speaks_tags(await call.initial_metadata())
        except Exception as exc:
            raise (error_from_rpc(exc) or exc) from None
        yield build_tree(report, connection, allow=allow, unsafe=unsafe)
    finally:
        await connection.aclose_async_channels()
        if connection.portal is None:
            connection.stack.close()
