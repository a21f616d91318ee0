"""A client's connection to one exporter session.

Unary and server-streaming driver calls from synchronous code go straight through a synchronous
gRPC channel: no event-loop hop, so a sync `call()` costs what a bare gRPC call costs. Everything
asynchronous (the `*_async` twins, byte streams, resources, logs) uses a grpc.aio channel on an
event loop: the caller's own loop, or the loop of the connection's blocking portal for sync code.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import ExitStack
from typing import Any

import grpc

from jumpstarter.protocol.v1 import jumpstarter_pb2_grpc, router_pb2_grpc
from jumpstarter.wire.options import GRPC_OPTIONS
from jumpstarter.wire.values import CODEC_USER_AGENT

CHANNEL_OPTIONS = (
    *GRPC_OPTIONS,
    ("grpc.primary_user_agent", CODEC_USER_AGENT),
    # notice a vanished exporter within seconds (grpc otherwise waits a minute for a ping answer)
    ("grpc.http2.ping_timeout_ms", 5_000),
)


def grpc_target(path_or_address: str) -> str:
    """gRPC target for a unix socket path or a `host:port` address."""
    if path_or_address.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return path_or_address
    if path_or_address.startswith("/") or path_or_address.startswith("."):
        return f"unix://{path_or_address}"
    return path_or_address


def unix_path(address: str) -> str | None:
    """The socket path of a unix-socket address (a path, `unix:PATH` or `unix://PATH`), else None."""
    if address.startswith("unix:"):
        path = address.removeprefix("unix:")
        return path[2:] if path.startswith("//") else path
    return address if address.startswith(("/", ".")) else None  # else host:port or another scheme


def _session_tls(address: str) -> tuple[grpc.ChannelCredentials, tuple[tuple[str, Any], ...]] | None:
    """Mutual TLS credentials and options for a socket with session TLS settings beside it."""
    path = unix_path(address)
    if path is None:
        return None
    from jumpstarter.client.session_tls import read_sidecar

    tls = read_sidecar(path)
    if tls is None:
        return None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca.encode(), private_key=tls.key.encode(), certificate_chain=tls.cert.encode()
    )
    return credentials, (("grpc.ssl_target_name_override", tls.server_name),)


class Connection:
    """Channels and stubs for one exporter, shared by every client in its tree."""

    def __init__(
        self,
        address: str,
        *,
        portal: Any = None,
        loop: asyncio.AbstractEventLoop | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        call_credentials_metadata: tuple[tuple[str, str], ...] = (),
        channel_options: tuple[tuple[str, Any], ...] = (),
    ) -> None:
        self.address = address
        self.target = grpc_target(address)
        self.portal = portal
        self.stack = ExitStack()
        if credentials is None:
            session_tls = _session_tls(address)
            if session_tls is not None:  # a leased exporter's socket: TLS through it, end to end
                credentials, tls_options = session_tls
                channel_options = (*channel_options, *tls_options)
                self.target = f"unix:{unix_path(address)}"
        self._credentials = credentials
        self._extra_metadata = call_credentials_metadata
        self._options = (*CHANNEL_OPTIONS, *channel_options)
        self._loop = loop  # the loop that owns async use when there is no portal
        self._lock = threading.Lock()
        self._sync_channel: grpc.Channel | None = None
        self._aio: dict[int, tuple[Any, Any, Any, Any]] = {}
        self.tagged = False  # whether the exporter speaks the tagged value dialect
        self._driver_call: Any = None
        self._streaming_call: Any = None

    # ---- synchronous stubs ---------------------------------------------------------------
    def _open_sync(self) -> grpc.Channel:
        with self._lock:
            if self._sync_channel is None:
                if self._credentials is not None:
                    channel = grpc.secure_channel(self.target, self._credentials, options=self._options)
                else:
                    channel = grpc.insecure_channel(self.target, options=self._options)
                stub = jumpstarter_pb2_grpc.ExporterServiceStub(channel)
                self._exporter_stub = stub
                self._driver_call = stub.DriverCall
                self._streaming_call = stub.StreamingDriverCall
                self._sync_channel = channel
            return self._sync_channel

    def exporter_stub(self) -> jumpstarter_pb2_grpc.ExporterServiceStub:
        """Synchronous ExporterService stub."""
        self._check_not_loop_thread()
        self._open_sync()
        return self._exporter_stub

    def driver_call(self) -> Any:
        """The synchronous DriverCall multicallable."""
        if self._driver_call is None:
            self._open_sync()
        self._check_not_loop_thread()
        return self._driver_call

    def streaming_call(self) -> Any:
        """The synchronous StreamingDriverCall multicallable."""
        if self._streaming_call is None:
            self._open_sync()
        self._check_not_loop_thread()
        return self._streaming_call

    def metadata(self, base: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...] | None:
        """Per-call metadata plus any credentials metadata (None when there is none)."""
        return (base + self._extra_metadata) or None

    def _check_not_loop_thread(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                return
            if running is loop:
                raise RuntimeError(
                    "synchronous client methods would block the event loop serving them; "
                    "use the *_async methods (call_async, streamingcall_async, stream_async) here"
                )

    # ---- asynchronous stubs --------------------------------------------------------------
    def aio_stubs(self) -> tuple[Any, Any]:
        """(ExporterService, RouterService) aio stubs for the running event loop."""
        loop = asyncio.get_running_loop()
        entry = self._aio.get(id(loop))
        if entry is None or entry[0] is not loop:
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(self.target, self._credentials, options=self._options)
            else:
                channel = grpc.aio.insecure_channel(self.target, options=self._options)
            entry = (
                loop,
                jumpstarter_pb2_grpc.ExporterServiceStub(channel),
                router_pb2_grpc.RouterServiceStub(channel),
                channel,
            )
            self._aio[id(loop)] = entry
        return entry[1], entry[2]

    def run_async(self, func: Any, *args: Any) -> Any:
        """Run an async function from synchronous code on the connection's portal."""
        if self.portal is None:
            raise RuntimeError("this client was opened in async mode; use the *_async methods")
        return self.portal.call(func, *args)

    async def aclose_async_channels(self) -> None:
        """Close the aio channel of the running loop."""
        loop = asyncio.get_running_loop()
        entry = self._aio.pop(id(loop), None)
        if entry is not None:
            await entry[3].close()

    def close(self) -> None:
        """Close every channel (async channels on their loops when possible)."""
        self.stack.close()
        if self.portal is not None and self._aio:
            try:
                self.portal.call(self.aclose_async_channels)
            except Exception:
                pass
        if self._sync_channel is not None:
            self._sync_channel.close()
            self._sync_channel = None
