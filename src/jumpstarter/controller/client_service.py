"""gRPC servicer of `jumpstarter.client.v1.ClientService`, upstream's client API: clients list
exporters and create, inspect, change and release leases (`jmp get/create/update/delete`)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from jumpstarter import errors
from jumpstarter.controller.auth import Principal
from jumpstarter.controller.coordinator import Coordinator
from jumpstarter.controller.model import Identity, Kind, Lease
from jumpstarter.controller.selectors import parse_selector
from jumpstarter.controller.service import (
    Authenticator,
    exporter_message,
    lease_message,
    parse_name,
    parse_parent,
    timestamp,
    unary,
)
from jumpstarter.protocol.client.v1 import client_pb2, client_pb2_grpc

#: UpdateLease mask paths we accept (snake_case and JSON names) -> the field they change.
UPDATE_PATHS = {
    "duration": "duration", "begin_time": "begin_time", "beginTime": "begin_time", "client": "client",
}

class ClientServicer(client_pb2_grpc.ClientServiceServicer):
    """Clients list exporters and create, inspect, change and release leases here."""

    def __init__(self, coordinator: Coordinator, auth: Authenticator) -> None:
        self.coordinator = coordinator
        self.auth = auth

    def _caller(self, context: grpc.aio.ServicerContext, namespace: str | None = None) -> tuple[Principal, Identity]:
        who = self.auth(context, Kind.CLIENT)
        if namespace is not None and namespace != who.namespace:
            raise errors.PermissionDeniedError(f"client {who.namespace}/{who.name} cannot use namespace {namespace}")
        return who, self.coordinator.get_identity(Kind.CLIENT, who.namespace, who.name)

    def _owner_or_admin(self, context: grpc.aio.ServicerContext, name: str) -> tuple[str, str, Identity | None]:
        """(namespace, lease name, calling client) for a call on lease `name`: a client may only
        reach its own namespace; an administrator (client None) any."""
        who = self.auth(context, Kind.CLIENT, Kind.ADMIN)
        namespace, lease_name = parse_name(name, "leases", who)
        if who.kind is Kind.ADMIN:
            return namespace, lease_name, None
        return namespace, lease_name, self._caller(context, namespace)[1]

    def _lease(self, lease: Lease) -> client_pb2.Lease:
        return lease_message(lease, self.coordinator.positions.get(lease.key))

    @unary
    async def GetExporter(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.CLIENT)
        namespace, name = parse_name(request.name, "exporters", who)
        self._caller(context, namespace)
        return exporter_message(self.coordinator.get_exporter(namespace, name))

    @unary
    async def ListExporters(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.CLIENT)
        namespace = parse_parent(request.parent, who)
        self._caller(context, namespace)
        found = self.coordinator.list_exporters(namespace, request.filter)
        return client_pb2.ListExportersResponse(exporters=[exporter_message(info) for info in found])

    @unary
    async def GetLease(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        namespace, name, client = self._owner_or_admin(context, request.name)
        return self._lease(self.coordinator.get_lease(client, namespace, name))

    @unary
    async def ListLeases(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.CLIENT)
        namespace = parse_parent(request.parent, who)
        self._caller(context, namespace)
        only_active = request.only_active if request.HasField("only_active") else True
        wanted = parse_selector(request.filter)
        # every client's, as upstream: `jmp get leases` shows the caller's own unless -A/--all-clients,
        # and `jmp get exporters --with leases` names whoever holds each exporter
        leases = [
            lease for lease in self.coordinator.list_leases(namespace, None, only_active)
            if wanted.matches(lease.tags)
        ]
        return client_pb2.ListLeasesResponse(leases=[self._lease(lease) for lease in leases])

    @unary
    async def CreateLease(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.CLIENT)
        namespace = parse_parent(request.parent, who)
        _, client = self._caller(context, namespace)
        spec = request.lease
        if not spec.HasField("duration"):
            raise errors.ArgumentError("a lease needs a duration")
        begin = spec.begin_time.ToNanoseconds() / 1e9 if spec.HasField("begin_time") else None
        lease = self.coordinator.create_lease(
            client, spec.selector, spec.duration.ToNanoseconds() / 1e9, name=request.lease_id,
            exporter_name=spec.exporter_name if spec.HasField("exporter_name") else None,
            begin_time=begin, tags=dict(spec.tags),
        )
        return self._lease(lease)

    @unary
    async def UpdateLease(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Change duration, begin time or owner (`update_mask` paths `duration`, `begin_time`,
        `client`; without a mask, the fields that are set)."""
        namespace, name, client = self._owner_or_admin(context, request.lease.name)
        spec = request.lease
        if request.HasField("update_mask"):
            paths = {UPDATE_PATHS.get(path, path) for path in request.update_mask.paths}
        else:
            paths = {path for path in ("duration", "begin_time") if spec.HasField(path)} | (
                {"client"} if spec.client else set()
            )
        unsupported = paths - set(UPDATE_PATHS.values())
        if unsupported:
            raise NotImplementedError(f"updating {', '.join(sorted(unsupported))} of a lease is not supported")
        changes: dict[str, Any] = {}
        if "duration" in paths:
            if not spec.HasField("duration"):
                raise errors.ArgumentError("the update mask names duration but the lease has none")
            changes["duration"] = spec.duration.ToNanoseconds() / 1e9
        if "begin_time" in paths:
            if not spec.HasField("begin_time"):
                raise errors.ArgumentError("the update mask names begin_time but the lease has none")
            changes["begin_time"] = spec.begin_time.ToNanoseconds() / 1e9
        if "client" in paths:
            if not spec.client:
                raise errors.ArgumentError("the update mask names client but the lease has none")
            # a bare client name means one of the lease's namespace
            owner_namespace, owner = parse_name(spec.client, "clients", Principal(Kind.CLIENT, namespace, ""))
            if owner_namespace != namespace:
                raise errors.PermissionDeniedError(
                    f"lease {namespace}/{name} can only move to a client of namespace {namespace}"
                )
            changes["owner"] = owner
        return self._lease(self.coordinator.update_lease(client, namespace, name, **changes))

    @unary
    async def DeleteLease(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.CLIENT)
        namespace, name = parse_name(request.name, "leases", who)
        _, client = self._caller(context, namespace)
        self.coordinator.release_lease(client, namespace, name)
        return empty_pb2.Empty()

    @unary
    async def RotateToken(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who, _ = self._caller(context)
        identity = self.coordinator.rotate(Kind.CLIENT, who.namespace, who.name)
        token, expiry = self.auth.authority.issue(identity)
        return client_pb2.RotateTokenResponse(token=token, expiry=timestamp(expiry))
