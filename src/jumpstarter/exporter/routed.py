"""The exporter's end of routed connections: each `{router_endpoint, router_token}` its Listen
stream announces becomes a router connection bridged to a fresh connection to one of the
exporter's own session sockets.

The token says how to meet the client (`streams.dataplane`): at the router's data port (an
end-to-end TLS session: spliced to the TLS session socket) or over `RouterService.Stream` (one
channel per router, shared by all its streams), where the client's first bytes tell a TLS session
(the TLS session socket) from plaintext gRPC (the plaintext one, as upstream clients speak)."""

from __future__ import annotations

import asyncio
import logging
import socket

import grpc

from jumpstarter.streams.dataplane import DataPortError, data_endpoint, is_tls, open_data_connection, pump
from jumpstarter.streams.tunnel import first_payload, open_stream, splice
from jumpstarter.wire.options import ROUTER_CHANNEL_OPTIONS

log = logging.getLogger("jumpstarter.exporter.routed")

#: Seconds to wait at the data port for the client's side (the router's own pairing limit is 30).
DATA_PORT_PATIENCE = 35.0


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
        meeting = data_endpoint(token)
        if meeting is not None:
            await self._bridge_data_port(meeting, token)
            return
        call = open_stream(self._channel(endpoint), token)
        try:
            first = await first_payload(call)
        except BaseException as exc:
            call.cancel()
            if not isinstance(exc, Exception):
                raise
            log.info("routed connection via %s ended: %s", endpoint, _describe(exc))
            return
        if not first:
            call.cancel()
            return
        target = self.tls_session_socket if is_tls(first) and self.tls_session_socket else self.session_socket
        sock = await self._connect_session(target)
        if sock is None:
            call.cancel()
            return
        try:
            await splice(call, sock, inbound_first=first)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("routed connection via %s ended: %s", endpoint, _describe(exc))

    async def _bridge_data_port(self, meeting: str, token: str) -> None:
        """An end-to-end TLS session met at the router's data port, spliced to the TLS session socket."""
        try:
            remote, early = await open_data_connection(meeting, token, DATA_PORT_PATIENCE)
        except DataPortError as exc:
            log.info("routed connection via data port %s failed: %s", meeting, exc)
            return
        if self.tls_session_socket is None:  # (not yet, or no longer): end it now, the client retries
            log.warning("a client asked for an end-to-end TLS session, but this exporter serves none now")
            remote.close()
            return
        local = await self._connect_session(self.tls_session_socket)
        if local is None:
            remote.close()
            return
        try:
            await pump(remote, local, to_right=early)
        except Exception as exc:
            log.info("routed connection via data port %s ended: %s", meeting, exc)

    @staticmethod
    async def _connect_session(path: str) -> socket.socket | None:
        """A connection to a session socket; None (logged) when it cannot be reached."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, path)
        except BaseException as exc:  # cut (lease ended) while connecting, too: nothing left open
            sock.close()
            if not isinstance(exc, OSError):
                raise
            log.warning("cannot reach the session socket for a routed connection: %s", exc)
            return None
        return sock

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
