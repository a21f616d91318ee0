"""The exporter's end of routed connections: each `{router_endpoint, router_token}` its Listen
stream announces becomes a router Stream bridged to a fresh connection to the exporter's own
session socket (one channel per router, shared by all its streams)."""

from __future__ import annotations

import asyncio
import logging
import socket

import grpc

from jumpstarter.streams.tunnel import open_stream, splice
from jumpstarter.wire.options import ROUTER_CHANNEL_OPTIONS

log = logging.getLogger("jumpstarter.exporter.routed")


class RoutedConnections:
    """Connections reaching this exporter's session through routers."""

    def __init__(self, session_socket: str, ca_pem: str | None, tls_session_socket: str | None = None) -> None:
        self.session_socket = session_socket
        #: the session socket speaking TLS (end-to-end sessions), when the exporter serves one
        self.tls_session_socket = tls_session_socket
        self._credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem.encode() if ca_pem else None)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def accept(self, endpoint: str, token: str) -> None:
        """Bridge the stream announced for `token` on the router at `endpoint` (in the background)."""
        task = asyncio.ensure_future(self._bridge(endpoint, token))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _channel(self, endpoint: str) -> grpc.aio.Channel:
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = grpc.aio.secure_channel(endpoint, self._credentials, options=ROUTER_CHANNEL_OPTIONS)
            self._channels[endpoint] = channel
        return channel

    async def _bridge(self, endpoint: str, token: str) -> None:
        call = open_stream(self._channel(endpoint), token)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, self.session_socket)
        except BaseException as exc:  # cut (lease ended) while connecting, too: no call left open
            call.cancel()
            sock.close()
            if not isinstance(exc, OSError):
                raise
            log.warning("cannot reach the session socket for a routed connection: %s", exc)
            return
        try:
            await splice(call, sock)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("routed connection via %s ended: %s", endpoint, _describe(exc))

    def close_all(self) -> None:
        """Cut every routed connection (the lease ended)."""
        for task in list(self._tasks):
            task.cancel()

    async def aclose(self) -> None:
        """Cut every connection and close the router channels."""
        tasks = list(self._tasks)
        self.close_all()
        await asyncio.gather(*tasks, return_exceptions=True)
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close(None)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__
