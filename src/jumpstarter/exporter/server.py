"""gRPC servers for a session: unix socket (local mode); TCP listeners come with direct mode."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc

from jumpstarter.exporter.servicer import ExporterServicer, StreamServicer
from jumpstarter.exporter.session import Session
from jumpstarter.exporter.status import CALLABLE, ExporterStatus
from jumpstarter.protocol.v1 import jumpstarter_pb2_grpc, router_pb2_grpc
from jumpstarter.wire.options import GRPC_OPTIONS


def add_servicers(
    server: grpc.aio.Server, session: Session, *, allowed: frozenset[ExporterStatus] = CALLABLE, **kwargs: Any
) -> None:
    """Register the session's ExporterService and RouterService on a server; driver calls are
    served in the statuses `allowed`."""
    jumpstarter_pb2_grpc.add_ExporterServiceServicer_to_server(
        ExporterServicer(session, allowed=allowed, **kwargs), server
    )
    router_pb2_grpc.add_RouterServiceServicer_to_server(StreamServicer(session, allowed), server)


@asynccontextmanager
async def serve_unix(
    session: Session, path: str, *extra_paths: str, options: tuple[tuple[str, Any], ...] = GRPC_OPTIONS,
    credentials: grpc.ServerCredentials | None = None, interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    **kwargs: Any,
) -> AsyncIterator[grpc.aio.Server]:
    """Serve `session` on unix sockets at `path` (and `extra_paths`) until the block exits; the
    sockets are removed afterwards. With `credentials` the sockets speak TLS."""
    paths = (path, *extra_paths)
    for p in paths:
        _claim_socket_path(p)
    server = grpc.aio.server(options=options, interceptors=interceptors)
    add_servicers(server, session, **kwargs)
    for p in paths:
        if credentials is not None:
            server.add_secure_port(f"unix://{p}", credentials)
        else:
            server.add_insecure_port(f"unix://{p}")
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0.5)
        for p in paths:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def _claim_socket_path(path: str) -> None:
    """Raise `FileExistsError` when `path` is in use; a socket nobody listens on any more (left
    by a killed exporter) is removed, so a restarted exporter does not trip over it."""
    import socket
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(mode):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except ConnectionRefusedError:
                os.unlink(path)
                return
            except OSError:
                pass
    raise FileExistsError(f"socket path {path} is already taken (is another exporter running?)")
