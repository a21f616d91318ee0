"""Receive an exporter's LogStream and re-log it locally."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from google.protobuf import empty_pb2

if TYPE_CHECKING:
    from jumpstarter.client.core import AsyncDriverClient

SOURCE_NAMES = {0: "exporter", 1: "driver", 2: "beforeLease", 3: "afterLease", 4: "exporter"}
#: How long to wait for our exporter to confirm a LogStream subscription.
SUBSCRIBE_TIMEOUT = 10.0


@asynccontextmanager
async def forward_logs(client: AsyncDriverClient, show_all: bool = True) -> AsyncIterator[None]:
    """Stream exporter logs into local loggers named `exporter.<source>` until the block exits."""

    def relog(entry: Any) -> None:
        source = entry.source if entry.HasField("source") else 0
        if not show_all and source not in (2, 3):
            return
        logger = logging.getLogger(f"exporter.{SOURCE_NAMES.get(source, 'exporter')}")
        level = logging.getLevelName(entry.severity.upper())
        logger.log(level if isinstance(level, int) else logging.INFO, "%s", entry.message)

    async with _log_stream(client, relog):
        yield


@asynccontextmanager
async def hold_session(client: AsyncDriverClient) -> AsyncIterator[None]:
    """Keep a LogStream open (its records dropped) while the block runs: a direct-mode exporter
    ends a client's session when the client's last such stream closes, so leaving the block
    releases the exporter at once instead of after its idle timeout."""
    async with _log_stream(client, None):
        yield


@asynccontextmanager
async def _log_stream(client: AsyncDriverClient, handle: Callable[[Any], None] | None) -> AsyncIterator[None]:
    export, _ = client.connection.aio_stubs()
    call = export.LogStream(empty_pb2.Empty(), metadata=client.connection.metadata(()))
    if client.connection.tagged:
        # our exporters answer with initial metadata once subscribed (and, in direct mode, once
        # the stream holds the session): records logged after this point reach us
        with anyio.move_on_after(SUBSCRIBE_TIMEOUT):
            try:
                await call.initial_metadata()
            except Exception:
                pass  # the pump below ends on the same failure

    async def pump() -> None:
        try:
            async for entry in call:
                if handle is not None:
                    handle(entry)
        except Exception:
            return  # the exporter went away; the caller learns that from its own calls

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            yield
            tg.cancel_scope.cancel()
    finally:
        call.cancel()
