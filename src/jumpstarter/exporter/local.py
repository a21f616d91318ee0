"""In-process exporter sessions: `serve(driver)` and `serve_async(driver)`.

A real gRPC server on a private unix socket, status LEASE_READY, drivers reset on entry and
closed on exit; what every driver test in the project runs against.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from jumpstarter.driver.base import Driver


@asynccontextmanager
async def local_session(root: Driver, **session_kwargs: Any) -> AsyncIterator[str]:
    """Serve `root` on a fresh unix socket; yields the socket path."""
    from jumpstarter.exporter.server import serve_unix
    from jumpstarter.exporter.session import Session
    from jumpstarter.exporter.status import ExporterStatus

    session = Session(root, **session_kwargs)
    with tempfile.TemporaryDirectory(prefix="jmp-") as tmp:
        path = os.path.join(tmp, "exporter.sock")
        session.install_log_handler()
        try:
            async with serve_unix(session, path):
                await session.reset_drivers()
                session.status.transition(ExporterStatus.LEASE_READY, "local session")
                yield path
        finally:
            session.remove_log_handler()
            await session.close_drivers()


@asynccontextmanager
async def serve_async(root: Driver, **session_kwargs: Any) -> AsyncIterator[Any]:
    """Serve `root` on the running event loop; yields the root client (use its *_async methods)."""
    from jumpstarter.client.client import client_from_path_async

    async with local_session(root, **session_kwargs) as path:
        async with client_from_path_async(path, unsafe=True) as client:
            yield client


@contextmanager
def serve(root: Driver, **session_kwargs: Any) -> Iterator[Any]:
    """Serve `root` from a background event loop; yields the root client for synchronous use."""
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.client import client_from_path

    with start_blocking_portal("asyncio") as portal:
        with portal.wrap_async_context_manager(local_session(root, **session_kwargs)) as path:
            with client_from_path(path, portal, unsafe=True) as client:
                yield client
