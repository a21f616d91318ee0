"""Which router a `Dial` hands out, and the routers that run as their own processes.

The controller serves `RouterService` itself unless told not to (the built-in router, reached at the
controller's own endpoint). Routers started with `jmp controller router` attach through
`RouterRegistryService.Attach` with the token of a router identity; the identity's labels say which
exporters they serve best. `choose` picks, among attached routers whose labels all match the
exporter's labels, the most specific one (most labels), spreading ties round-robin; with none, the
built-in router. Deleting a router identity detaches that router at once.

A router created with `--endpoint HOST` carries the host as its label `jumpstarter.dev/router-host`
(labels under `jumpstarter.dev/` are not matched against exporters): the controller signs a
certificate only for that host and hands the router out only under it. A router without one gets no
certificate from the controller (it must bring its own, `--tls-cert/--tls-key`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from jumpstarter import errors
from jumpstarter.controller.model import Identity, Kind, Lease, LeasePhase
from jumpstarter.controller.service import Authenticator, abort_with, unary
from jumpstarter.protocol.admin.v1 import routers_pb2, routers_pb2_grpc

log = logging.getLogger("jumpstarter.controller")
#: The label holding the only host a router may get a certificate for and be reached at.
HOST_LABEL = "jumpstarter.dev/router-host"
#: Labels under this prefix say something about the router itself; they are not matched.
RESERVED_PREFIX = "jumpstarter.dev/"
#: Lease events queued for one attached router before it is dropped (it re-attaches and resyncs).
EVENT_QUEUE = 10_000


@dataclass(eq=False, slots=True)
class AttachedRouter:
    """A router process connected to this controller."""

    name: str
    endpoint: str
    labels: dict[str, str]
    namespace: str = "default"
    data_endpoint: str = ""  # HOST:PORT of its data port; empty: none
    events: asyncio.Queue[routers_pb2.RouterEvent | None] = field(default_factory=lambda: asyncio.Queue(EVENT_QUEUE))
    #: why the controller detached it for good (its identity was deleted); None: it may re-attach
    refusal: str | None = None


def matched_labels(labels: dict[str, str]) -> dict[str, str]:
    """The labels of a router that exporters' labels must carry (not the reserved ones)."""
    return {k: v for k, v in labels.items() if not k.startswith(RESERVED_PREFIX)}


def pick(routers: list[AttachedRouter], labels: dict[str, str], turn: int) -> AttachedRouter | None:
    """The router for an exporter with `labels` (pure: `turn` breaks ties round-robin)."""
    fitting = [r for r in routers if all(labels.get(k) == v for k, v in matched_labels(r.labels).items())]
    if not fitting:
        return None
    best = max(len(matched_labels(r.labels)) for r in fitting)
    tied = [r for r in fitting if len(matched_labels(r.labels)) == best]
    return tied[turn % len(tied)]


class RouterRegistry:
    """Attached routers, the built-in one, and lease events for them."""

    def __init__(self, builtin: str | None, active_leases: Callable[[], list[Lease]]) -> None:
        self.builtin = builtin  # endpoint of the router inside the controller; None: disabled
        self.builtin_data_port: int | None = None  # port of its data port; None: none
        self._active_leases = active_leases
        self._attached: list[AttachedRouter] = []
        self._turns = itertools.count()

    @property
    def attached(self) -> list[AttachedRouter]:
        """Routers attached right now."""
        return list(self._attached)

    def choose(self, exporter_labels: dict[str, str]) -> str:
        """The endpoint a client and exporter should meet at."""
        chosen = pick(self._attached, exporter_labels, next(self._turns))
        if chosen is not None:
            return chosen.endpoint
        if self.builtin is not None:
            return self.builtin
        raise errors.ConnectionLostError("no router is available: none is attached to the controller")

    def data_endpoint(self, endpoint: str) -> str | None:
        """The data port of the router at `endpoint`, if it has one."""
        if endpoint == self.builtin and self.builtin_data_port is not None:
            from jumpstarter.controller.data_port import public_endpoint

            return public_endpoint(endpoint, self.builtin_data_port)
        for router in self._attached:
            if router.endpoint == endpoint and router.data_endpoint:
                return router.data_endpoint
        return None

    def lease_changed(self, lease: Lease) -> None:
        """Tell attached routers that a lease started or ended."""
        key = f"{lease.namespace}/{lease.name}"
        if lease.phase is LeasePhase.READY:
            event = routers_pb2.RouterEvent(started_leases=[key])
        elif not lease.active:
            event = routers_pb2.RouterEvent(ended_leases=[key])
        else:
            return
        for router in list(self._attached):
            try:
                router.events.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("router %s is not keeping up with lease events; dropping it", router.name)
                self._drop(router)

    def identity_deleted(self, identity: Identity) -> None:
        """A deleted router identity: detach its router now (its Attach stream fails, so the router
        stops, ending its routed streams; Dial no longer hands it out)."""
        if identity.kind is not Kind.ROUTER:
            return
        for router in list(self._attached):
            if (router.namespace, router.name) == identity.key:
                router.refusal = f"router {identity.namespace}/{identity.name} was deleted"
                log.info("router %s deleted; detaching it", router.name)
                self._drop(router)

    def _drop(self, router: AttachedRouter) -> None:
        with contextlib.suppress(ValueError):
            self._attached.remove(router)
        with contextlib.suppress(asyncio.QueueFull):
            router.events.put_nowait(None)

    async def attach(self, router: AttachedRouter, keys: dict[str, str]) -> AsyncIterator[routers_pb2.RouterEvent]:
        """Events for an attached router, a snapshot first; it is handed out while this iterates."""
        ready = [lease for lease in self._active_leases() if lease.phase is LeasePhase.READY]
        active = [f"{lease.namespace}/{lease.name}" for lease in ready]
        self._attached.append(router)
        log.info("router %s attached at %s (labels %s)", router.name, router.endpoint, router.labels or "none")
        try:
            yield routers_pb2.RouterEvent(verification_keys=keys, snapshot=True, active_leases=active)
            while (event := await router.events.get()) is not None:
                yield event
        finally:
            self._drop(router)
            log.info("router %s detached", router.name)


def issue_certificate(ca_cert_pem: bytes, ca_key_pem: bytes, public_key_pem: str, hosts: list[str]) -> str:
    """A server certificate for `hosts` and the router's public key, signed by the controller's CA."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from jumpstarter.wire import certificates

    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key: Any = serialization.load_pem_private_key(ca_key_pem, password=None)
    public: Any = serialization.load_pem_public_key(public_key_pem.encode())
    cert = certificates.sign(
        certificates.name("jumpstarter-router"), public, issuer=ca_cert.subject, signing_key=ca_key,
        until=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365),
        extensions=[(x509.SubjectAlternativeName(certificates.alt_names(hosts)), False),
                    (x509.BasicConstraints(ca=False, path_length=None), True),
                    (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)],
    )  # fmt: skip
    return certificates.pem(cert).decode()


class RouterRegistryServicer(routers_pb2_grpc.RouterRegistryServiceServicer):
    """Routers attach here; only router identities may."""

    def __init__(
        self, registry: RouterRegistry, auth: Authenticator, coordinator: Any, ca: tuple[bytes, bytes] | None
    ) -> None:
        self.registry = registry
        self.auth = auth
        self.coordinator = coordinator
        self.ca = ca  # (certificate, key) PEM of the controller's self-made certificate, or None

    @unary
    async def IssueRouterCertificate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.ROUTER)
        identity = self.coordinator.get_identity(Kind.ROUTER, who.namespace, who.name)
        if self.ca is None:
            raise errors.ConfigurationError(
                "this controller serves a certificate it was given (--tls-cert), so it cannot vouch for "
                "routers: start the router with --tls-cert/--tls-key trusted by the clients' tls.ca"
            )
        if not request.hosts:
            raise errors.ArgumentError("name at least one host for the router certificate")
        _check_hosts(identity, list(request.hosts))
        cert = issue_certificate(self.ca[0], self.ca[1], request.public_key_pem, list(request.hosts))
        return routers_pb2.RouterCertificate(certificate_pem=cert)

    async def Attach(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            who = self.auth(context, Kind.ROUTER)
            identity = self.coordinator.get_identity(Kind.ROUTER, who.namespace, who.name)
            if not request.endpoint or ":" not in request.endpoint:
                raise errors.ArgumentError("a router must give its endpoint as HOST:PORT")
            allowed = identity.labels.get(HOST_LABEL)
            host = request.endpoint.rsplit(":", 1)[0].strip("[]")
            if allowed is not None and host != allowed:
                raise errors.PermissionDeniedError(
                    f"router {who.namespace}/{who.name} may only be reached at host {allowed} "
                    f"(its --endpoint), not at {request.endpoint}"
                )
            if request.data_endpoint and request.data_endpoint.rsplit(":", 1)[0].strip("[]") != host:
                raise errors.ArgumentError(
                    f"a router's data port must be on its own host {host}, not at {request.data_endpoint}"
                )
        except (errors.JumpstarterError, ValueError) as exc:
            await abort_with(context, exc)
            return
        router = AttachedRouter(
            who.name, request.endpoint, dict(identity.labels), who.namespace, data_endpoint=request.data_endpoint
        )
        async for event in self.registry.attach(router, self.auth.authority.verification_keys()):
            yield event
        if router.refusal is not None:
            await abort_with(context, errors.PermissionDeniedError(router.refusal))


def _check_hosts(identity: Identity, hosts: list[str]) -> None:
    """Refuse a certificate for any host but the one the router was created with."""
    allowed = identity.labels.get(HOST_LABEL)
    if allowed is None:
        raise errors.PermissionDeniedError(
            f"router {identity.namespace}/{identity.name} was created without --endpoint, so the controller "
            "signs no certificate for it: recreate it with `jmp admin create router NAME --endpoint HOST:PORT`, "
            "or start it with --tls-cert/--tls-key"
        )
    others = sorted(set(hosts) - {allowed})
    if others:
        raise errors.PermissionDeniedError(
            f"router {identity.namespace}/{identity.name} may only get a certificate for {allowed} "
            f"(its --endpoint), not for {', '.join(others)}"
        )
