"""`jumpstarter.admin.v1.LeaseWatchService`: a client hears of every change to one of its leases
as it happens (granted, ended, end time moved, exporter gone or back) instead of polling GetLease.

Ours, not upstream's: a client talking to an upstream controller gets UNIMPLEMENTED and polls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from jumpstarter import errors
from jumpstarter.controller.coordinator import Coordinator
from jumpstarter.controller.model import Kind
from jumpstarter.controller.service import Authenticator, abort_with, lease_message, parse_name
from jumpstarter.protocol.admin.v1 import leases_pb2, leases_pb2_grpc


class LeaseWatchServicer(leases_pb2_grpc.LeaseWatchServiceServicer):
    """Streams a client's lease as it changes; only its owner may watch it."""

    def __init__(self, coordinator: Coordinator, auth: Authenticator) -> None:
        self.coordinator = coordinator
        self.auth = auth

    async def WatchLease(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            who = self.auth(context, Kind.CLIENT)
            namespace, name = parse_name(request.name, "leases", who)
            if namespace != who.namespace:
                raise errors.PermissionDeniedError(
                    f"client {who.namespace}/{who.name} cannot use namespace {namespace}"
                )
            client = self.coordinator.get_identity(Kind.CLIENT, who.namespace, who.name)
            async for lease, online in self.coordinator.lease_updates(client, namespace, name):
                position = self.coordinator.positions.get(lease.key)
                yield leases_pb2.LeaseEvent(lease=lease_message(lease, position), exporter_online=online)
        except (errors.JumpstarterError, ValueError) as exc:
            await abort_with(context, exc)
