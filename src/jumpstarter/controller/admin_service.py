"""`jumpstarter.admin.v1.AdminService`: clients, exporters, their tokens and access policies, for
`jmp admin`."""

from __future__ import annotations

from typing import Any

import grpc

from jumpstarter import errors
from jumpstarter.controller.coordinator import Coordinator
from jumpstarter.controller.model import DEFAULT_NAMESPACE, Identity, Kind, Policy
from jumpstarter.controller.service import Authenticator, duration, timestamp, unary
from jumpstarter.protocol.admin.v1 import admin_pb2, admin_pb2_grpc

#: Kinds an administrator manages.
MANAGED = {"client": Kind.CLIENT, "exporter": Kind.EXPORTER, "router": Kind.ROUTER}


def _kind(text: str) -> Kind:
    kind = MANAGED.get(text.lower())
    if kind is None:
        raise errors.ArgumentError(f"unknown kind {text!r}: expected client, exporter or router")
    return kind


def identity_message(identity: Identity) -> admin_pb2.Identity:
    """An identity on the wire."""
    return admin_pb2.Identity(
        kind=identity.kind.value, namespace=identity.namespace, name=identity.name, labels=identity.labels,
        created=timestamp(identity.created), reported_labels=identity.reported_labels,
        token_generation=identity.token_generation, username=identity.username or "",
    )


def policy_message(policy: Policy) -> admin_pb2.Policy:
    """An access policy on the wire."""
    message = admin_pb2.Policy(
        namespace=policy.namespace, name=policy.name, exporter_selector=policy.exporter_selector,
        clients=list(policy.clients), priority=policy.priority,
    )
    if policy.client_selector is not None:
        message.client_selector = policy.client_selector
    if policy.maximum_duration is not None:
        message.maximum_duration.CopyFrom(duration(policy.maximum_duration))
    return message


def policy_from(message: admin_pb2.Policy) -> Policy:
    """An access policy from the wire."""
    return Policy(
        namespace=message.namespace or DEFAULT_NAMESPACE, name=message.name,
        exporter_selector=message.exporter_selector.strip(), clients=tuple(message.clients),
        client_selector=message.client_selector.strip() if message.HasField("client_selector") else None,
        maximum_duration=(
            message.maximum_duration.ToNanoseconds() / 1e9 if message.HasField("maximum_duration") else None
        ),
        priority=message.priority,
    )


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """Administration calls; only the admin identity may make them."""

    def __init__(self, coordinator: Coordinator, auth: Authenticator) -> None:
        self.coordinator = coordinator
        self.auth = auth

    def _token(self, identity: Identity) -> admin_pb2.IdentityToken:
        token, expiry = self.auth.authority.issue(identity)
        return admin_pb2.IdentityToken(identity=identity_message(identity), token=token, expiry=timestamp(expiry))

    @unary
    async def CreateIdentity(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.auth(context, Kind.ADMIN)
        ref = request.ref
        identity = self.coordinator.create_identity(
            _kind(ref.kind), ref.namespace, ref.name, dict(request.labels), request.username or None
        )
        return self._token(identity)

    @unary
    async def GetIdentity(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.auth(context, Kind.ADMIN)
        return identity_message(self.coordinator.get_identity(_kind(request.kind), request.namespace, request.name))

    @unary
    async def ListIdentities(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.auth(context, Kind.ADMIN)
        found = self.coordinator.store.list_identities(_kind(request.kind), request.namespace or None)
        return admin_pb2.ListIdentitiesResponse(identities=[identity_message(i) for i in found])

    @unary
    async def DeleteIdentity(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.auth(context, Kind.ADMIN)
        kind = _kind(request.kind)
        identity = self.coordinator.get_identity(kind, request.namespace, request.name)
        self.coordinator.delete_identity(kind, request.namespace, request.name)
        return identity_message(identity)

    @unary
    async def IssueToken(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.auth(context, Kind.ADMIN)
        return self._token(self.coordinator.get_identity(_kind(request.kind), request.namespace, request.name))

    @unary
    async def RotateToken(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.auth(context, Kind.ADMIN)
        return self._token(self.coordinator.rotate(_kind(request.kind), request.namespace, request.name))

    @unary
    async def CreatePolicy(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.auth(context, Kind.ADMIN)
        return policy_message(self.coordinator.put_policy(policy_from(request.policy), replace=request.replace))

    @unary
    async def GetPolicy(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.auth(context, Kind.ADMIN)
        policy = self.coordinator.get_policy(request.namespace or DEFAULT_NAMESPACE, request.name)
        assert policy is not None
        return policy_message(policy)

    @unary
    async def ListPolicies(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.auth(context, Kind.ADMIN)
        found = self.coordinator.store.list_policies(request.namespace or None)
        return admin_pb2.ListPoliciesResponse(policies=[policy_message(p) for p in found])

    @unary
    async def DeletePolicy(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.auth(context, Kind.ADMIN)
        return policy_message(self.coordinator.delete_policy(request.namespace or DEFAULT_NAMESPACE, request.name))
