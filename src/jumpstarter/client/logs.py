"""Receive an exporter's LogStream and re-log it locally."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from google.protobuf import empty_pb2

if TYPE_CHECKING:
    from jumpstarter.client.core import AsyncDriverClient

SOURCE_NAMES = {0: "exporter", 1: "driver", 2: "beforeLease", 3: "afterLease", 4: "exporter"}


@asynccontextmanager
async def forward_logs(client: AsyncDriverClient, show_all: bool = True) -> AsyncIterator[None]:
    """Stream exporter logs into local loggers named `exporter.<source>` until the block exits."""
    export, _ = client.connection.aio_stubs()

    async def pump() -> None:
        call = export.LogStream(empty_pb2.Empty(), metadata=client.connection.metadata(()))
        try:
            async for entry in call:
                source = entry.source if entry.HasField("source") else 0
                if not show_all and source not in (2, 3):
                    continue
                logger = logging.getLogger(f"exporter.{SOURCE_NAMES.get(source, 'exporter')}")
                level = logging.getLevelName(entry.severity.upper())
                logger.log(level if isinstance(level, int) else logging.INFO, "%s", entry.message)
        except Exception:
            return  # the exporter went away; the caller learns that from its own calls
        finally:
            call.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump)
        yield
        tg.cancel_scope.cancel()
