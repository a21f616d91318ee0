"""Leases from the client side: request or attach to a lease, wait until it is ready, and serve it
on a private unix socket whose every connection is carried through the router to the exporter.

`serve_lease` is the piece everything else builds on: each connection accepted on the socket
makes its own `Dial` (a fresh stream token) and its own router stream, and carries the raw bytes of
that connection, so anything that talks gRPC to a unix socket (`client_from_path`, `j`, `env()`)
works unchanged through it. When the router or controller restarts, connections in flight fail and
new ones dial again (retrying while the controller or exporter is briefly away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from jumpstarter.client.controller import auth_metadata, channel_parts, translate
from jumpstarter.config.client import ClientConfig
from jumpstarter.errors import (
    ArgumentError,
    ConnectionLostError,
    ExporterBusyError,
    ExporterNotReadyError,
    LeaseEndedError,
)
from jumpstarter.streams.dataplane import REQUEST_METADATA as DATA_PLANE_METADATA
from jumpstarter.streams.dataplane import DataPortError, data_endpoint, is_tls, open_data_connection, pump
from jumpstarter.streams.tunnel import open_stream, splice
from jumpstarter.wire.options import ROUTER_CHANNEL_OPTIONS

log = logging.getLogger("jumpstarter.client.lease")

#: Seconds to wait at a data port for the exporter's side (the router's own pairing limit is 30).
DATA_PORT_PATIENCE = 35.0

#: Errors after which dialing again may work (the controller or exporter is briefly away).
RETRYABLE = (ConnectionLostError, ExporterNotReadyError, TimeoutError)
#: How often a waiting lease is looked at when the controller cannot push its changes (upstream's).
PENDING_POLL = 0.2


def lease_phase(lease: Any) -> tuple[str, str]:
    """(phase, message) of a `client.v1.Lease` from its conditions: Pending, Ready, Unsatisfiable,
    Invalid, Ended (message: the reason) or Unknown."""
    conditions = {c.type: c for c in lease.conditions}
    for phase in ("Unsatisfiable", "Invalid"):
        if phase in conditions and conditions[phase].status == "True":
            return phase, conditions[phase].message
    ready = conditions.get("Ready")
    if ready is not None and ready.status == "True":
        return "Ready", ""
    pending = conditions.get("Pending")
    if pending is not None and pending.status == "True":
        return "Pending", pending.message
    if ready is not None and ready.reason in ("Released", "Expired"):
        return "Ended", ready.reason
    return "Unknown", ""


def ended_message(lease: Any) -> str:
    """Why a lease ended, for people: `expired`, `released (exporter board1 went offline)`."""
    conditions = {c.type: c for c in lease.conditions}
    ready = conditions.get("Ready")
    if ready is None:
        return "ended"
    reason = (ready.reason or "ended").lower()
    return f"{reason} ({ready.message})" if ready.message and ready.message != "lease expired" else reason


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


class ControllerSession:
    """Asynchronous calls to the controller with one client config's credentials."""

    def __init__(self, config: ClientConfig) -> None:
        target, credentials, options = channel_parts(config)
        self.config = config
        self.endpoint = target
        self.namespace = config.metadata.namespace or "default"
        self.metadata = auth_metadata(config)
        self.channel = grpc.aio.secure_channel(target, credentials, options=options)

    async def call(
        self, method: Any, request: Any, seconds: float = 30.0, extra: tuple[tuple[str, str], ...] = ()
    ) -> Any:
        """Call a stub method (deadline: `seconds`, `extra` metadata); our exception types on failure."""
        try:
            return await method(request, metadata=(*self.metadata, *extra), timeout=seconds)
        except grpc.RpcError as exc:
            raise translate(exc, self.endpoint) from None

    def clients(self) -> Any:
        from jumpstarter.protocol.client.v1 import client_pb2_grpc

        return client_pb2_grpc.ClientServiceStub(self.channel)

    def lease_path(self, name: str) -> str:
        """The resource name of one of our leases."""
        return f"namespaces/{self.namespace}/leases/{name}"

    async def create_lease(self, selector: str, duration: float, exporter_name: str | None = None) -> Any:
        """Request a lease; returns it as the controller has it now."""
        from google.protobuf import duration_pb2

        from jumpstarter.protocol.client.v1 import client_pb2

        length = duration_pb2.Duration()
        length.FromNanoseconds(int(duration * 1e9))
        spec = client_pb2.Lease(selector=selector, duration=length)
        if exporter_name:
            spec.exporter_name = exporter_name
        request = client_pb2.CreateLeaseRequest(parent=f"namespaces/{self.namespace}", lease=spec)
        return await self.call(self.clients().CreateLease, request)

    async def get_lease(self, name: str) -> Any:
        """One of our leases."""
        from jumpstarter.protocol.client.v1 import client_pb2

        return await self.call(self.clients().GetLease, client_pb2.GetLeaseRequest(name=self.lease_path(name)))

    async def release_lease(self, name: str) -> None:
        """Release one of our leases."""
        from jumpstarter.protocol.client.v1 import client_pb2

        await self.call(self.clients().DeleteLease, client_pb2.DeleteLeaseRequest(name=self.lease_path(name)))

    async def exporter_labels(self, name: str) -> dict[str, str]:
        """Labels of an exporter of our namespace."""
        from jumpstarter.protocol.client.v1 import client_pb2

        request = client_pb2.GetExporterRequest(name=f"namespaces/{self.namespace}/exporters/{name}")
        return dict((await self.call(self.clients().GetExporter, request)).labels)

    async def dial(self, lease_name: str, seconds: float, data_plane: bool = False) -> tuple[str, str]:
        """(router endpoint, stream token) for one new connection to the lease's exporter;
        `data_plane`: ask to meet at the router's data port (an end-to-end TLS session)."""
        from jumpstarter.protocol.v1 import jumpstarter_pb2, jumpstarter_pb2_grpc

        stub = jumpstarter_pb2_grpc.ControllerServiceStub(self.channel)
        extra = ((DATA_PLANE_METADATA, "1"),) if data_plane else ()
        answer = await self.call(stub.Dial, jumpstarter_pb2.DialRequest(lease_name=lease_name), seconds, extra)
        return answer.router_endpoint, answer.router_token

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close(None)


@dataclass(slots=True)
class ReadyLease:
    """A lease with its exporter assigned."""

    name: str
    exporter: str
    expires: float | None  # seconds since the epoch


async def wait_ready(
    session: ControllerSession, name: str, progress: Callable[[str], None], patience: float
) -> ReadyLease:
    """Wait up to `patience` seconds until lease `name` is Ready, reporting its queue position
    through `progress` whenever it changes (see `wait_granted`)."""
    lease = await wait_granted(session, name, progress, patience)
    expires = lease.effective_end_time.ToNanoseconds() / 1e9 if lease.HasField("effective_end_time") else None
    return ReadyLease(name, _short(lease.exporter), expires)


async def wait_granted(
    session: ControllerSession, name: str, progress: Callable[[str], None], patience: float
) -> Any:
    """Lease `name` (a `client.v1.Lease`) once Ready, waiting up to `patience` seconds and
    reporting its queue position through `progress` whenever it changes (ExporterBusyError when
    it is not ready in time; ArgumentError when it is unsatisfiable or invalid, LeaseEndedError
    when it has ended). The controller pushes the grant and every position change; one that
    cannot (upstream's) is asked every PENDING_POLL seconds."""
    from jumpstarter.client.lease_watch import lease_updates

    shown = message = ""
    updates = lease_updates(session, name, PENDING_POLL)
    try:
        async with asyncio.timeout(patience) as limit, contextlib.aclosing(updates):
            async for lease, _ in updates:
                phase, message = lease_phase(lease)
                if phase == "Ready":
                    return lease
                if phase in ("Unsatisfiable", "Invalid"):
                    raise ArgumentError(f"lease {name} is {phase.lower()}: {message}")
                if phase == "Ended":
                    raise LeaseEndedError(f"lease {name} has ended: {ended_message(lease)}")
                if message != shown:
                    progress(f"lease {name}: waiting, {message}")
                    shown = message
    except TimeoutError:
        if not limit.expired():
            raise
        raise ExporterBusyError(f"lease {name} not ready after {patience:g}s: {message or 'waiting'}") from None
    raise LeaseEndedError(f"lease {name} has ended")  # (the updates stop only once it has)


@dataclass(eq=False)
class LeaseTunnel:
    """Serves one lease on a unix socket: every accepted connection is dialled and routed."""

    session: ControllerSession
    lease_name: str
    dial_timeout: float = 60.0
    #: meet the exporter at routers' data ports (TLS sessions only); off after one failed
    data_plane: bool = True
    #: connections carried so far, by way: "data port" or "stream"
    routes: Counter[str] = field(default_factory=Counter)
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def _channel(self, endpoint: str) -> grpc.aio.Channel:
        channel = self._channels.get(endpoint)
        if channel is None:
            ca = self.session.config.tls.ca
            credentials = grpc.ssl_channel_credentials(root_certificates=ca.encode() if ca else None)
            channel = grpc.aio.secure_channel(endpoint, credentials, options=ROUTER_CHANNEL_OPTIONS)
            self._channels[endpoint] = channel
        return channel

    async def dial(self, data_plane: bool = False) -> tuple[str, str]:
        """A router endpoint and token for one connection, retrying while that may help."""
        deadline = time.monotonic() + self.dial_timeout
        delay = 0.1
        while True:
            remaining = deadline - time.monotonic()
            try:
                return await self.session.dial(self.lease_name, max(1.0, min(remaining, 35.0)), data_plane)
            except RETRYABLE as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.debug("dial of lease %s failed (%s); retrying", self.lease_name, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def handle(self, sock: socket.socket) -> None:
        """Carry one accepted connection through the router (closing it when done). Its first bytes
        say what it is: an end-to-end TLS session (`session_tls`) goes through the router's data
        port when there is one; plaintext gRPC (upstream clients) goes over RouterService.Stream."""
        try:
            first = await asyncio.get_running_loop().sock_recv(sock, 1 << 16)  # the client speaks first
        except OSError:
            first = b""
        if not first:
            sock.close()
            return
        data_plane = is_tls(first) and self.data_plane
        try:
            endpoint, token = await self.dial(data_plane)
        except BaseException as exc:
            sock.close()  # the client sees its connection fail (the shell reports why)
            if not isinstance(exc, Exception):
                raise
            # said where the user looks (the shell's stderr, pytest's log): the call fails with a bare
            # "failed to connect" on its side of the socket
            log.warning("connection to lease %s failed: %s", self.lease_name, _describe(exc))
            return
        meeting = data_endpoint(token) if data_plane else None
        try:
            if meeting is None:
                self.routes["stream"] += 1
                kind = "end-to-end TLS" if is_tls(first) else "plaintext"
                log.debug("connection to lease %s: %s via RouterService.Stream at %s", self.lease_name, kind, endpoint)
                await splice(open_stream(self._channel(endpoint), token), sock, outbound_first=first)
                return
            try:
                remote, early = await open_data_connection(meeting, token, DATA_PORT_PATIENCE)
            except DataPortError as exc:
                # say it once, and send later connections over RouterService.Stream (still end to
                # end: the exporter tells TLS from plaintext there too)
                log.warning("%s; lease %s goes over RouterService.Stream from now on", exc, self.lease_name)
                self.data_plane = False
                sock.close()
                return
            self.routes["data port"] += 1
            log.debug("connection to lease %s: end-to-end TLS via data port %s", self.lease_name, meeting)
            await pump(sock, remote, to_right=first, to_left=early)
        except Exception as exc:
            log.info("routed connection to lease %s ended: %s", self.lease_name, _describe(exc))

    async def serve(self, listener: socket.socket) -> None:
        """Accept connections on a listening socket until cancelled (then cut them all)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                sock, _ = await loop.sock_accept(listener)
                sock.setblocking(False)
                task = asyncio.ensure_future(self.handle(sock))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Cut every connection and close the router channels."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close(None)


@asynccontextmanager
async def serve_lease(tunnel: LeaseTunnel, path: str) -> AsyncIterator[LeaseTunnel]:
    """Serve `tunnel` on a unix socket at `path` (private to this user) until the block exits.
    When the lease's exporter serves end-to-end TLS sessions, `<path>.tls` tells connections how
    (see client.session_tls)."""
    from jumpstarter.client.session_tls import prepare, sidecar_path, write_sidecar

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(128)
        listener.setblocking(False)
        try:
            tls = await prepare(tunnel.session, tunnel.lease_name)
        except Exception as exc:  # plaintext through the router, as before
            log.debug("no end-to-end TLS for lease %s: %s", tunnel.lease_name, exc)
            tls = None
        if tls is not None:
            write_sidecar(path, tls)
        acceptor = asyncio.ensure_future(tunnel.serve(listener))
        try:
            yield tunnel
        finally:
            acceptor.cancel()
            await asyncio.gather(acceptor, return_exceptions=True)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sidecar_path(path))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__
