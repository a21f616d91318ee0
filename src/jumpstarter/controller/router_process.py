"""`jmp controller router`: a router as its own process, for spreading routed traffic over hosts.

It authenticates to the controller with a router credential (`jmp admin create router NAME --out
FILE`), gets a TLS certificate signed by the controller's CA (unless given one), serves
`RouterService.Stream`, and attaches: while attached, the controller hands it out on `Dial`
(best label match with the exporter), sends it the keys that verify stream tokens and tells it
which leases are active, so it refuses tokens of ended leases and closes their streams at once.
When the controller goes away the router keeps relaying the streams it has and re-attaches with
backoff; new streams need the controller anyway (tokens come from `Dial`). When the controller
refuses it (its identity was deleted, or it asks for a host it was not created for), the router
ends its streams and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from jumpstarter.controller.data_port import DataPort, parse_address, public_endpoint
from jumpstarter.controller.router import Router
from jumpstarter.controller.stream_tokens import StreamTokenVerifier
from jumpstarter.errors import ConfigurationError
from jumpstarter.wire.listen import add_port

log = logging.getLogger("jumpstarter.router")
#: Reconnection backoff towards the controller: first wait, factor, cap (seconds).
BACKOFF = (0.2, 2.0, 5.0)
#: How long a token for a lease we have not heard of yet may wait for the controller's news.
LATE_NEWS = 2.0


@dataclass(slots=True)
class RouterSettings:
    """How to run a router process."""

    address: str
    credential: Path
    endpoint: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    data_address: str | None = None  # data port: [HOST:]PORT, "off", None: any free port


class WatchedLeases:
    """The active leases, as the controller's events say (the router's `LeaseGate`)."""

    def __init__(self) -> None:
        self.active: set[str] = set()
        self._changed = asyncio.Event()

    async def refusal(self, lease: str) -> str | None:
        """None when the lease is active (waiting briefly for news of a lease that just began)."""
        deadline = time.monotonic() + LATE_NEWS
        while lease not in self.active:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"lease {lease} is not active"
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
        return None

    def apply(self, event: Any, router: Router, verifier: StreamTokenVerifier) -> None:
        """Take in one event from the controller; close the streams of leases that ended."""
        if event.verification_keys:
            verifier.update(dict(event.verification_keys))
        ended = set(event.ended_leases)
        if event.snapshot:
            fresh = set(event.active_leases)
            ended |= (self.active | router.leases()) - fresh
            self.active = fresh
        self.active |= set(event.started_leases)
        self.active -= ended
        for lease in ended:
            router.close_lease(lease, "lease ended")
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


def _host_of(address: str) -> str:
    return address.rsplit(":", 1)[0].strip("[]")


def _public_host(settings: RouterSettings) -> str:
    host = _host_of(settings.endpoint or settings.address)
    return socket.gethostname() if host in ("", "0.0.0.0", "::") else host


async def _issued_identity(stub: Any, metadata: Any, hosts: list[str]) -> tuple[bytes, bytes]:
    """A fresh key and a certificate for it signed by the controller (retrying until reachable)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from jumpstarter.protocol.admin.v1 import routers_pb2

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    request = routers_pb2.RouterCertificateRequest(hosts=hosts, public_key_pem=public)
    delay = BACKOFF[0]
    while True:
        try:
            issued = await stub.IssueRouterCertificate(request, metadata=metadata, timeout=10)
            break
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.UNAVAILABLE:
                raise _refused(exc) from None
            log.warning("controller unreachable (%s); retrying in %.1fs", exc.details(), delay)
        await asyncio.sleep(delay)
        delay = min(delay * BACKOFF[1], BACKOFF[2])
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return issued.certificate_pem.encode(), key_pem


def _refused(exc: grpc.aio.AioRpcError) -> BaseException:
    """Our error for a call the controller refused."""
    from jumpstarter.client.controller import translate

    return translate(exc, "the controller")


async def _attach_forever(
    stub: Any, metadata: Any, endpoint: str, leases: WatchedLeases, router: Router, verifier: StreamTokenVerifier,
    announce: Callable[[str], None], data_endpoint: str = "",
) -> None:
    from jumpstarter.protocol.admin.v1 import routers_pb2

    delay = BACKOFF[0]
    while True:
        try:
            attached = False
            request = routers_pb2.AttachRouterRequest(endpoint=endpoint, data_endpoint=data_endpoint)
            async for event in stub.Attach(request, metadata=metadata):
                leases.apply(event, router, verifier)
                if not attached:
                    attached = True
                    delay = BACKOFF[0]
                    announce(f"router attached to the controller as {endpoint}")
            log.warning("the controller ended the attachment; re-attaching")
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise _refused(exc) from None
            log.warning("controller unreachable (%s); retrying in %.1fs", exc.details(), delay)
        await asyncio.sleep(delay)
        delay = min(delay * BACKOFF[1], BACKOFF[2])


async def serve_router(settings: RouterSettings, announce: Callable[[str], None] = print) -> None:
    """Run a router until SIGINT/SIGTERM."""
    from jumpstarter.client.controller import auth_metadata, channel_parts
    from jumpstarter.config.client import ClientConfig
    from jumpstarter.controller.server import SERVER_OPTIONS
    from jumpstarter.protocol.admin.v1 import routers_pb2_grpc

    config = ClientConfig.from_file(settings.credential)
    target, credentials, options = channel_parts(config)
    metadata = auth_metadata(config)
    verifier = StreamTokenVerifier()
    leases = WatchedLeases()
    router = Router(verifier, leases)
    async with grpc.aio.secure_channel(target, credentials, options=options) as channel:
        stub = routers_pb2_grpc.RouterRegistryServiceStub(channel)
        host = _public_host(settings)
        if settings.tls_cert is not None and settings.tls_key is not None:
            cert, key = settings.tls_cert.read_bytes(), settings.tls_key.read_bytes()
        elif settings.tls_cert is None and settings.tls_key is None:
            cert, key = await _issued_identity(stub, metadata, [host])  # the controller signs for no other
        else:
            raise ConfigurationError("give both --tls-cert and --tls-key, or neither")
        server = grpc.aio.server(options=SERVER_OPTIONS)
        server.add_generic_rpc_handlers((router.generic_handler(),))
        port = add_port(server, settings.address, grpc.ssl_server_credentials([(key, cert)]))
        await server.start()
        endpoint = settings.endpoint or f"{host}:{port}"
        announce(f"router listening on {_host_of(settings.address)}:{port} (TLS)")
        data_port, data_endpoint, data_plane = None, "", None
        where = parse_address(settings.data_address, settings.address)
        if where is not None:
            data_port = DataPort(router)
            try:
                data_endpoint = public_endpoint(endpoint, data_port.listen(*where))
            except OSError as exc:
                await server.stop(None)
                raise OSError(f"cannot open the data port on {where[0]}:{where[1]}: {exc.strerror}") from None
            data_plane = asyncio.ensure_future(data_port.serve())
            announce(f"router data port: {data_endpoint}")
        attach = asyncio.ensure_future(
            _attach_forever(stub, metadata, endpoint, leases, router, verifier, announce, data_endpoint)
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({attach, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            attach.cancel()
            stopping.cancel()
            if data_plane is not None:
                data_plane.cancel()
                await asyncio.gather(data_plane, return_exceptions=True)
            if attach.done() and not attach.cancelled() and attach.exception() is not None:
                for lease in router.leases():  # refused (deleted): routed streams end now, not after the grace
                    router.close_lease(lease, "the controller detached this router")
            await server.stop(grace=1.0)
        if attach.done() and not attach.cancelled() and attach.exception() is not None:
            raise attach.exception()  # type: ignore[misc]
