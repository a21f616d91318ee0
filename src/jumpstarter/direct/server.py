"""Serve an exporter session over TCP, with TLS and passphrase authentication by default."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from jumpstarter.direct.gate import SessionGate
from jumpstarter.direct.tls import ServerIdentity
from jumpstarter.exporter.server import add_servicers
from jumpstarter.exporter.servicer import abort_with
from jumpstarter.exporter.session import Session
from jumpstarter.wire.listen import add_port
from jumpstarter.wire.options import GRPC_OPTIONS

#: RPCs that never start a session (anyone authenticated may ask for the status).
_UNGATED = ("/jumpstarter.v1.ExporterService/GetStatus",)
_END_SESSION = "/jumpstarter.v1.ExporterService/EndSession"
#: Long-lived RPCs whose end means the client went away.
_KEEPERS = ("/jumpstarter.v1.ExporterService/LogStream",)

#: Notice dead clients within seconds: ping every 5 s, give up 5 s after an unanswered ping.
TCP_OPTIONS = (
    *[(k, v) for k, v in GRPC_OPTIONS if k not in ("grpc.keepalive_time_ms", "grpc.keepalive_timeout_ms")],
    ("grpc.keepalive_time_ms", 5_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    # recent grpc cores wait this long for any ping's answer (default 60 s), keepalive pings included
    ("grpc.http2.ping_timeout_ms", 5_000),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 1_000),
    ("grpc.so_reuseport", 0),
)


class GateInterceptor(grpc.aio.ServerInterceptor):
    """Runs every RPC through the `SessionGate` (authentication, one client at a time)."""

    def __init__(self, gate: SessionGate) -> None:
        self.gate = gate

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        gate = self.gate
        keeper = method in _KEEPERS
        ungated = method in _UNGATED

        async def admit(context: Any) -> Any:
            metadata = dict(context.invocation_metadata() or ())
            try:
                gate.authenticate(metadata, context.peer())
                if method == _END_SESSION:
                    await gate.end_session(metadata, context.peer())
                    return None
                if ungated:
                    return None
                return await gate.enter(metadata, context.peer(), keeper)
            except Exception as exc:
                await abort_with(context, exc)
                raise

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                holder = await admit(context)
                try:
                    return await inner(request, context)
                finally:
                    if holder is not None:
                        await gate.leave(holder, keeper)

            return grpc.unary_unary_rpc_method_handler(unary, handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                holder = await admit(context)
                try:
                    async for item in inner_us(request, context):
                        yield item
                finally:
                    if holder is not None:
                        await gate.leave(holder, keeper)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream is not None:
            inner_ss = handler.stream_stream

            async def stream_stream(request_iterator: Any, context: Any) -> Any:
                holder = await admit(context)
                try:
                    result = inner_ss(request_iterator, context)
                    if inspect.isasyncgen(result):
                        async for item in result:
                            await context.write(item)
                    else:
                        await result
                finally:
                    if holder is not None:
                        await gate.leave(holder, keeper)

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


@asynccontextmanager
async def serve_tcp(
    session: Session,
    address: str,
    gate: SessionGate,
    identity: ServerIdentity | None,
    **servicer_kwargs: Any,
) -> AsyncIterator[int]:
    """Serve `session` on `address` (`host:port`, port 0 picks one); yields the bound port.
    Without `identity` the listener is plain TCP."""
    server = grpc.aio.server(options=TCP_OPTIONS, interceptors=[GateInterceptor(gate)])
    add_servicers(server, session, **servicer_kwargs)
    credentials = grpc.ssl_server_credentials([(identity.key_pem, identity.cert_pem)]) if identity else None
    port = add_port(server, address, credentials)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=0.5)
