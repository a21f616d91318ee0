"""Running a controller: data directory, TLS, admin credential, gRPC server, clean shutdown.

Data directory layout: `controller.db` (SQLite store: identities, leases, policies, signing keys),
`tls/cert.pem` + `tls/key.pem` (self-signed unless given), `session-ca.crt` + `session-ca.key` (the CA of
end-to-end TLS sessions, see session_certs), `admin.yaml` (a ClientConfig-shaped
credential for `jmp admin`, rewritten on every start with the current endpoint).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from jumpstarter.controller.admin_service import AdminServicer
from jumpstarter.controller.auth import TokenAuthority
from jumpstarter.controller.client_service import ClientServicer
from jumpstarter.controller.coordinator import OFFLINE_GRACE, Coordinator
from jumpstarter.controller.data_port import DataPort, parse_address
from jumpstarter.controller.dial import Dialer
from jumpstarter.controller.lease_watch import LeaseWatchServicer
from jumpstarter.controller.model import DEFAULT_NAMESPACE, Identity, Kind, Lease
from jumpstarter.controller.oidc import OidcIssuers, load_auth_config
from jumpstarter.controller.routers import RouterRegistry, RouterRegistryServicer
from jumpstarter.controller.service import Authenticator, ControllerServicer
from jumpstarter.controller.session_certs import SessionCA, SessionCertificateServicer
from jumpstarter.controller.store.sqlite import SqliteStore
from jumpstarter.direct.tls import ServerIdentity, generate_self_signed
from jumpstarter.protocol.admin.v1 import admin_pb2_grpc, leases_pb2_grpc, routers_pb2_grpc, sessions_pb2_grpc
from jumpstarter.protocol.client.v1 import client_pb2_grpc
from jumpstarter.protocol.v1 import jumpstarter_pb2_grpc
from jumpstarter.wire.listen import add_port

log = logging.getLogger("jumpstarter.controller")
ADMIN_CREDENTIAL = "admin.yaml"
ADMIN_NAME = "admin"

#: Pings find dead peers (a vanished exporter host) within ~15 s even without a clean TCP close.
SERVER_OPTIONS = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    # router frames carry up to 1 MiB of payload (upstream peers may send more)
    ("grpc.max_receive_message_length", 16 << 20),
    ("grpc.max_send_message_length", 16 << 20),
    # a second controller (or router) on a port in use must fail, not share it with the first
    ("grpc.so_reuseport", 0),
)

#: grpc.aio hands every completion from its poller thread to the event loop's thread, and each
#: hand-off waits for the GIL; with Python's default 5 ms switch interval a busy loop thread keeps
#: them waiting (a GIL convoy): with 1,000 exporters connected, calls waited several times longer.
SWITCH_INTERVAL = 0.0005
#: Collect the young generation every 20,000 allocations, not 700: with the default, objects of a
#: call that lasted a few hundred milliseconds reached the oldest generation, whose collections
#: over the state of 1,000 connected exporters then stopped the controller for up to 0.35 s.
GC_THRESHOLDS = (20_000, 20, 20)


@dataclass(slots=True)
class ControllerSettings:
    """How to run a controller."""

    address: str
    data_dir: Path
    tls_cert: Path | None = None
    tls_key: Path | None = None
    endpoint: str | None = None  # advertised in credentials; default: the bound address
    router: bool = True  # serve RouterService here (the built-in router)
    offline_grace: float = OFFLINE_GRACE  # seconds a leased exporter may be offline before its lease ends
    auth_config: Path | None = None  # OIDC issuers accepted besides the controller's own
    data_address: str | None = None  # the built-in router's data port: [HOST:]PORT, "off", None: any free port


def tls_identity(settings: ControllerSettings) -> ServerIdentity:
    """The server certificate: given, or self-signed once and kept in the data directory."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        return ServerIdentity(settings.tls_cert.read_bytes(), settings.tls_key.read_bytes())
    directory = settings.data_dir / "tls"
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.is_file() and key.is_file():
        return ServerIdentity(cert.read_bytes(), key.read_bytes())
    host = settings.address.rsplit(":", 1)[0].strip("[]")
    hosts = [socket.gethostname()] + ([host] if host not in ("", "0.0.0.0", "::") else [])
    if settings.endpoint:
        hosts.append(settings.endpoint.rsplit(":", 1)[0].strip("[]"))
    identity = generate_self_signed(hosts)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_private(key, identity.key_pem)
    _write_private(cert, identity.cert_pem)
    return identity


def _write_private(path: Path, data: bytes) -> None:
    from jumpstarter.config.paths import SECRET_MODE, atomic_write

    atomic_write(path, data.decode(), SECRET_MODE)


def write_admin_credential(
    settings: ControllerSettings, authority: TokenAuthority, endpoint: str, ca_pem: bytes
) -> Path:
    """(Re)write the admin credential: endpoint, CA and a token of the admin identity."""
    from jumpstarter.config.client import ClientConfig
    from jumpstarter.config.common import ObjectMeta, TLSConfig
    from jumpstarter.config.paths import SECRET_MODE, atomic_write

    store = authority.store
    admin = store.get_identity(Kind.ADMIN, DEFAULT_NAMESPACE, ADMIN_NAME)
    if admin is None:
        import time

        admin = Identity(Kind.ADMIN, DEFAULT_NAMESPACE, ADMIN_NAME, created=time.time())
        store.put_identity(admin)
    token, _ = authority.issue(admin)
    config = ClientConfig(
        metadata=ObjectMeta(name=ADMIN_NAME, namespace=DEFAULT_NAMESPACE),
        endpoint=endpoint,
        tls=TLSConfig(ca=ca_pem.decode()),
        token=token,
    )
    path = settings.data_dir / ADMIN_CREDENTIAL
    atomic_write(path, config.to_yaml(), SECRET_MODE)
    return path


class OidcKeysInterceptor(grpc.aio.ServerInterceptor):
    """Before a call is handled, fetch (in a worker thread) the OIDC keys its token needs, so that
    verification, which only reads the cache, never blocks the event loop nor fails a first token."""

    def __init__(self, issuers: OidcIssuers) -> None:
        self.issuers = issuers

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        """Prepare the keys, then hand the call on."""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                await self.issuers.prepare(str(value).partition(" ")[2].strip())
        return await continuation(handler_call_details)


def advertised(settings: ControllerSettings, port: int) -> str:
    """The endpoint written into credentials and configs."""
    if settings.endpoint:
        return settings.endpoint
    host = settings.address.rsplit(":", 1)[0].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"{host}:{port}"


def routing(
    settings: ControllerSettings,
    server: grpc.aio.Server,
    coordinator: Coordinator,
    auth: Authenticator,
    identity: ServerIdentity,
) -> tuple[RouterRegistry, DataPort | None]:
    """Register the router services: the built-in router (unless disabled), its data port (bound,
    not serving yet) and the registry that routers running as their own processes attach to."""
    from jumpstarter.controller.router import CoordinatorGate, Router
    from jumpstarter.controller.stream_tokens import StreamTokenVerifier

    store = coordinator.store
    registry = RouterRegistry(None, lambda: store.list_leases(active_only=True))
    coordinator.lease_listeners.append(registry.lease_changed)
    coordinator.deletion_listeners.append(registry.identity_deleted)
    ca = (identity.cert_pem, identity.key_pem) if settings.tls_cert is None else None
    routers_pb2_grpc.add_RouterRegistryServiceServicer_to_server(
        RouterRegistryServicer(registry, auth, coordinator, ca), server
    )
    if settings.router:
        router = Router(StreamTokenVerifier(auth.authority.verification_keys()), CoordinatorGate(coordinator))

        def close_ended(lease: Lease) -> None:
            if not lease.active:
                router.close_lease(f"{lease.namespace}/{lease.name}", lease.message or lease.reason)

        coordinator.lease_listeners.append(close_ended)
        server.add_generic_rpc_handlers((router.generic_handler(),))
        where = parse_address(settings.data_address, settings.address)
        if where is not None:
            data_port = DataPort(router)
            try:
                registry.builtin_data_port = data_port.listen(*where)
            except OSError as exc:
                raise OSError(f"cannot open the router data port on {where[0]}:{where[1]}: {exc.strerror}") from None
            return registry, data_port
    return registry, None


async def serve(settings: ControllerSettings, announce: Callable[[str], None] = print) -> None:
    """Run the controller until SIGINT/SIGTERM; every change is already on disk when it stops."""
    try:
        import jwt  # noqa: F401
    except ImportError:
        from jumpstarter.errors import ConfigurationError

        raise ConfigurationError("the controller needs PyJWT: pip install 'jumpstarter[controller]'") from None
    auth_config = load_auth_config(settings.auth_config) if settings.auth_config is not None else None
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SqliteStore.in_directory(settings.data_dir)
    switch_interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        authority = TokenAuthority(store)
        oidc = OidcIssuers.from_config(auth_config, store) if auth_config is not None else None
        authority.external = oidc
        identity = tls_identity(settings)
        coordinator = Coordinator(store, offline_grace=settings.offline_grace)
        auth = Authenticator(authority)
        interceptors = [OidcKeysInterceptor(oidc)] if oidc is not None else []
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
        registry, data_port = routing(settings, server, coordinator, auth, identity)
        dialer = Dialer(coordinator, authority, registry)
        jumpstarter_pb2_grpc.add_ControllerServiceServicer_to_server(
            ControllerServicer(coordinator, auth, dialer), server
        )
        client_pb2_grpc.add_ClientServiceServicer_to_server(ClientServicer(coordinator, auth), server)
        leases_pb2_grpc.add_LeaseWatchServiceServicer_to_server(LeaseWatchServicer(coordinator, auth), server)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(coordinator, auth), server)
        sessions_pb2_grpc.add_SessionCertificateServiceServicer_to_server(
            SessionCertificateServicer(SessionCA.load_or_create(settings.data_dir), auth, coordinator), server
        )
        credentials = grpc.ssl_server_credentials([(identity.key_pem, identity.cert_pem)])
        port = add_port(server, settings.address, credentials)
        await server.start()
        endpoint = advertised(settings, port)
        if settings.router:
            registry.builtin = endpoint
        credential = write_admin_credential(settings, authority, endpoint, identity.cert_pem)
        host = settings.address.rsplit(":", 1)[0]
        announce(f"controller listening on {host}:{port} (TLS)")
        if settings.router:
            announce(f"router: built in, at {endpoint}")
        data_plane = None
        if data_port is not None and registry.builtin_data_port is not None:
            data_plane = asyncio.create_task(data_port.serve())
            announce(f"router data port: {registry.data_endpoint(endpoint)}")
        announce(f"admin credential: {credential}")
        if oidc is not None:
            announce(f"OIDC issuers: {', '.join(oidc.issuers) or 'none'}")
        prefetch = asyncio.create_task(oidc.prefetch()) if oidc is not None else None
        scheduler = asyncio.create_task(coordinator.run())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            log.info("controller stopping")
            await server.stop(grace=1.0)
            scheduler.cancel()
            if data_plane is not None:
                data_plane.cancel()
            await asyncio.gather(scheduler, *([data_plane] if data_plane else []), return_exceptions=True)
            if prefetch is not None:
                prefetch.cancel()
    finally:
        store.close()
        sys.setswitchinterval(switch_interval)
        gc.set_threshold(*thresholds)
