"""gRPC servicer of the controller's `jumpstarter.v1.ControllerService` (exporters, legacy lease
calls), and what every controller servicer shares: authentication, the translation of leases and
exporters into messages, resource names. Servicers authenticate, translate and call the
`Coordinator`; errors become statuses through the one table in `jumpstarter.wire.status`.
`client_service` serves clients (`jumpstarter.client.v1.ClientService`)."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2

from jumpstarter import errors
from jumpstarter.controller.auth import Principal, TokenAuthority, bearer
from jumpstarter.controller.coordinator import Coordinator, ExporterInfo
from jumpstarter.controller.model import Identity, Kind, Lease, LeasePhase
from jumpstarter.controller.selectors import Op, Selector, parse_selector
from jumpstarter.exporter.status import ExporterStatus
from jumpstarter.protocol.client.v1 import client_pb2
from jumpstarter.protocol.v1 import jumpstarter_pb2, jumpstarter_pb2_grpc, kubernetes_pb2
from jumpstarter.streams.dataplane import REQUEST_METADATA as DATA_PLANE_METADATA
from jumpstarter.wire import status as wire_status

if TYPE_CHECKING:
    from jumpstarter.controller.dial import Dialer

log = logging.getLogger("jumpstarter.controller")
R = TypeVar("R")


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """Abort the RPC with the status the one table gives for `exc`."""
    code = wire_status.code_for(exc)
    if code in ("UNKNOWN", "INTERNAL"):
        log.warning("controller call failed: %r", exc, exc_info=exc)
    await context.abort(
        grpc.StatusCode[code],
        wire_status.message_for(exc),
        trailing_metadata=((wire_status.ERROR_TYPE_KEY, wire_status.type_name(exc)),),
    )


def unary(func: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Turn our errors raised by a unary handler into statuses."""

    @functools.wraps(func)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await func(self, request, context)
        except (errors.JumpstarterError, ValueError, LookupError) as exc:
            await abort_with(context, exc)
            raise AssertionError("unreachable") from None

    return wrapper


class Authenticator:
    """Checks the bearer token of a call and the kind of identity making it."""

    def __init__(self, authority: TokenAuthority) -> None:
        self.authority = authority

    def __call__(self, context: grpc.aio.ServicerContext, *kinds: Kind) -> Principal:
        principal = self.authority.verify(bearer(context.invocation_metadata()))
        if kinds and principal.kind not in kinds:
            allowed = " or ".join(k.value.lower() for k in kinds)
            article = "an" if allowed[0] in "aeiou" else "a"
            caller = f"{principal.kind.value.lower()} {principal.namespace}/{principal.name}"
            raise errors.PermissionDeniedError(f"only {article} {allowed} may call this, not {caller}")
        return principal


# ---- conversions ------------------------------------------------------------------------------


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp."""
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def duration(seconds: float) -> duration_pb2.Duration:
    """A protobuf Duration."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def condition(type_: str, status: bool, reason: str, message: str, when: float) -> kubernetes_pb2.Condition:
    """A Kubernetes-style condition."""
    return kubernetes_pb2.Condition(
        type=type_, status="True" if status else "False", reason=reason, message=message,
        lastTransitionTime=kubernetes_pb2.Time(seconds=int(when), nanos=0),
    )


def lease_conditions(lease: Lease, position: int | None) -> list[kubernetes_pb2.Condition]:
    """Upstream's lease conditions (Pending, Ready, Unsatisfiable) for a lease."""
    when = lease.effective_begin or lease.created
    match lease.phase:
        case LeasePhase.PENDING:
            if position:
                message = f"position {position} in queue"
            else:
                message = "waiting for its begin time" if lease.begin_time is not None else "waiting for an exporter"
            return [condition("Pending", True, "Queued", message, lease.created),
                    condition("Ready", False, "Pending", message, lease.created)]
        case LeasePhase.READY:
            return [condition("Pending", False, "Ready", "", when), condition("Ready", True, "Ready", "", when)]
        case LeasePhase.UNSATISFIABLE | LeasePhase.INVALID:
            return [condition(lease.phase.value, True, lease.phase.value, lease.message, lease.created),
                    condition("Ready", False, lease.phase.value, lease.message, lease.created)]
        case LeasePhase.ENDED:
            return [condition("Pending", False, lease.reason, lease.message, when),
                    condition("Ready", False, lease.reason, lease.message, lease.effective_end or when)]
    raise AssertionError(lease.phase)


def lease_message(lease: Lease, position: int | None) -> client_pb2.Lease:
    """A lease as `jumpstarter.client.v1.Lease`."""
    msg = client_pb2.Lease(
        name=f"namespaces/{lease.namespace}/leases/{lease.name}",
        selector=lease.selector,
        duration=duration(lease.duration),
        effective_duration=duration(lease.duration),
        client=f"namespaces/{lease.namespace}/clients/{lease.client}",
        conditions=lease_conditions(lease, position),
        tags=lease.tags,
    )
    if lease.exporter_name:
        msg.exporter_name = lease.exporter_name
    if lease.begin_time is not None:
        msg.begin_time.CopyFrom(timestamp(lease.begin_time))
    if lease.exporter:
        msg.exporter = f"namespaces/{lease.namespace}/exporters/{lease.exporter}"
    if lease.effective_begin is not None:
        msg.effective_begin_time.CopyFrom(timestamp(lease.effective_begin))
    if lease.effective_end is not None:
        msg.effective_end_time.CopyFrom(timestamp(lease.effective_end))
    return msg


def exporter_message(info: ExporterInfo) -> client_pb2.Exporter:
    """An exporter as `jumpstarter.client.v1.Exporter`."""
    identity = info.identity
    return client_pb2.Exporter(
        name=f"namespaces/{identity.namespace}/exporters/{identity.name}",
        labels=identity.effective_labels,
        online=info.online,
        status=int(info.status if info.online else ExporterStatus.OFFLINE),  # type: ignore[arg-type]
        status_message=info.message,
        enabled=identity.enabled,
    )


def parse_parent(parent: str, principal: Principal) -> str:
    """The namespace of `namespaces/{ns}` (the caller's own when empty)."""
    if not parent:
        return principal.namespace
    parts = parent.split("/")
    if len(parts) != 2 or parts[0] != "namespaces" or not parts[1]:
        raise errors.ArgumentError(f"invalid parent {parent!r}: expected namespaces/NAMESPACE")
    return parts[1]


def parse_name(name: str, collection: str, principal: Principal) -> tuple[str, str]:
    """(namespace, name) of `namespaces/{ns}/{collection}/{name}`, or of a bare name."""
    parts = name.split("/")
    if len(parts) == 1 and parts[0]:
        return principal.namespace, parts[0]
    if len(parts) != 4 or parts[0] != "namespaces" or parts[2] != collection or not parts[3]:
        raise errors.ArgumentError(f"invalid name {name!r}: expected namespaces/NAMESPACE/{collection}/NAME")
    return parts[1], parts[3]


def selector_text(selector: kubernetes_pb2.LabelSelector) -> str:
    """A legacy `LabelSelector` message as selector text."""
    ops = {"In": Op.IN, "NotIn": Op.NOT_IN, "Exists": Op.EXISTS, "DoesNotExist": Op.DOES_NOT_EXIST}
    base = Selector.from_labels(dict(selector.match_labels))
    extra = []
    from jumpstarter.controller.selectors import Requirement

    for expr in selector.match_expressions:
        if expr.operator not in ops:
            raise errors.ArgumentError(f"unknown selector operator {expr.operator!r}")
        extra.append(Requirement(expr.key, ops[expr.operator], tuple(expr.values)))
    return str(Selector(base.requirements + tuple(extra)))


# ---- ControllerService ------------------------------------------------------------------------


class ControllerServicer(jumpstarter_pb2_grpc.ControllerServiceServicer):
    """Exporters register, stream their lease assignments and report status here."""

    def __init__(self, coordinator: Coordinator, auth: Authenticator, dialer: Dialer | None = None) -> None:
        self.coordinator = coordinator
        self.auth = auth
        self.dialer = dialer

    def _client(self, principal: Principal) -> Identity:
        return self.coordinator.get_identity(Kind.CLIENT, principal.namespace, principal.name)

    @unary
    async def Register(self, request: Any, context: grpc.aio.ServicerContext) -> jumpstarter_pb2.RegisterResponse:
        who = self.auth(context, Kind.EXPORTER)
        self.coordinator.register(who.namespace, who.name, dict(request.labels))
        return jumpstarter_pb2.RegisterResponse(uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{who.namespace}/{who.name}")))

    @unary
    async def Unregister(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.EXPORTER)
        reason = request.reason or "unregistered"
        self.coordinator.report_status(who.namespace, who.name, ExporterStatus.OFFLINE, reason)
        return jumpstarter_pb2.UnregisterResponse()

    @unary
    async def ReportStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.EXPORTER)
        self.coordinator.report_status(
            who.namespace, who.name, ExporterStatus(request.status), request.message, request.release_lease
        )
        return jumpstarter_pb2.ReportStatusResponse()

    async def Status(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            who = self.auth(context, Kind.EXPORTER)
            stream = self.coordinator.status_stream(who.namespace, who.name)
            async for a in stream:
                yield jumpstarter_pb2.StatusResponse(
                    leased=a.leased, lease_name=a.lease_name, client_name=a.client_name
                )
        except (errors.JumpstarterError, ValueError) as exc:
            await abort_with(context, exc)

    async def Listen(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """Router endpoints and tokens for client connections to the lease, until it ends."""
        try:
            who = self.auth(context, Kind.EXPORTER)
            if self.dialer is None:
                raise NotImplementedError("this controller hands out no router connections")
            async for offer in self.dialer.listen(who.namespace, who.name, request.lease_name):
                yield jumpstarter_pb2.ListenResponse(
                    router_endpoint=offer.router_endpoint, router_token=offer.router_token
                )
        except (errors.JumpstarterError, ValueError, NotImplementedError) as exc:
            await abort_with(context, exc)

    @unary
    async def Dial(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.CLIENT)
        if self.dialer is None:
            raise NotImplementedError("this controller hands out no router connections")
        asked = dict(context.invocation_metadata() or ()).get(DATA_PLANE_METADATA) == "1"
        offer = await self.dialer.dial(
            self._client(who), who.namespace, request.lease_name, context.time_remaining(), data_plane=asked
        )
        return jumpstarter_pb2.DialResponse(router_endpoint=offer.router_endpoint, router_token=offer.router_token)

    async def AuditStream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            self.auth(context, Kind.EXPORTER)
        except errors.JumpstarterError as exc:
            await abort_with(context, exc)
        async for _ in request_iterator:
            pass
        return empty_pb2.Empty()

    @unary
    async def GetLease(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.CLIENT)
        lease = self.coordinator.get_lease(self._client(who), who.namespace, request.name)
        response = jumpstarter_pb2.GetLeaseResponse(
            duration=duration(lease.duration),
            selector=_legacy_selector(lease.selector),
            conditions=lease_conditions(lease, self.coordinator.positions.get(lease.key)),
        )
        if lease.effective_begin is not None:
            response.begin_time.CopyFrom(timestamp(lease.effective_begin))
        if lease.effective_end is not None:
            response.end_time.CopyFrom(timestamp(lease.effective_end))
        if lease.exporter:
            response.exporter_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{lease.namespace}/{lease.exporter}"))
        return response

    @unary
    async def RequestLease(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.CLIENT)
        lease = self.coordinator.create_lease(
            self._client(who), selector_text(request.selector), request.duration.ToTimedelta().total_seconds()
        )
        return jumpstarter_pb2.RequestLeaseResponse(name=lease.name)

    @unary
    async def ReleaseLease(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.CLIENT)
        self.coordinator.release_lease(self._client(who), who.namespace, request.name)
        return jumpstarter_pb2.ReleaseLeaseResponse()

    @unary
    async def ListLeases(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.CLIENT)
        leases = self.coordinator.list_leases(who.namespace, who.name, only_active=True)
        return jumpstarter_pb2.ListLeasesResponse(names=[lease.name for lease in leases])

    @unary
    async def GetServiceEndpoints(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.auth(context)
        return jumpstarter_pb2.GetServiceEndpointsResponse()


def _legacy_selector(text: str) -> kubernetes_pb2.LabelSelector:
    names = {Op.IN: "In", Op.NOT_IN: "NotIn", Op.EXISTS: "Exists", Op.DOES_NOT_EXIST: "DoesNotExist"}
    message = kubernetes_pb2.LabelSelector()
    for r in parse_selector(text).requirements:
        if r.op is Op.EQUALS:
            message.match_labels[r.key] = r.values[0]
        elif r.op is Op.NOT_EQUALS:
            message.match_expressions.add(key=r.key, operator="NotIn", values=list(r.values))
        else:
            message.match_expressions.add(key=r.key, operator=names[r.op], values=list(r.values))
    return message
