"""`Dial` and `Listen`: connecting a client to the exporter of its lease through a router.

An exporter holding a lease keeps a `Listen` stream open for it. A client's `Dial(lease)` checks
the lease is the client's and Ready and that its exporter is ready to serve (waiting a bounded
time while it is still running its beforeLease hook, or reconnecting), mints a stream token, picks
a router, announces `{router_endpoint, router_token}` on the exporter's Listen stream and returns
the same pair to the client. Both then open `RouterService.Stream` on that router with the token.
Listen streams of a lease end when the lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from jumpstarter import errors
from jumpstarter.controller.coordinator import Coordinator
from jumpstarter.controller.model import Identity, Kind, Lease, LeasePhase
from jumpstarter.controller.routers import RouterRegistry
from jumpstarter.controller.stream_tokens import Signer, mint
from jumpstarter.exporter.status import ExporterStatus

#: Longest a Dial waits for the exporter to become ready (upstream: 30 s).
DIAL_WAIT = 30.0
#: Stream offers queued on one Listen stream before Dial reports the exporter busy.
LISTEN_QUEUE = 64
S = ExporterStatus


@dataclass(slots=True, frozen=True)
class Offer:
    """Where and with which token to meet for one connection."""

    router_endpoint: str
    router_token: str


class Dialer:
    """Listen streams of exporters and the Dial calls of clients."""

    def __init__(self, coordinator: Coordinator, signer: Signer, routers: RouterRegistry) -> None:
        self.coordinator = coordinator
        self.signer = signer
        self.routers = routers
        self._listening: dict[tuple[str, str], list[asyncio.Queue[Offer | None]]] = {}
        coordinator.lease_listeners.append(self._lease_changed)

    def _lease_changed(self, lease: Lease) -> None:
        if not lease.active:
            for queue in self._listening.pop(lease.key, []):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)

    async def listen(self, namespace: str, exporter: str, lease_name: str) -> AsyncIterator[Offer]:
        """Offers for the exporter of a lease, until the lease ends."""
        lease = self.coordinator.get_lease(None, namespace, lease_name)
        if lease.exporter != exporter:
            raise errors.PermissionDeniedError(f"lease {lease_name} is not held on this exporter")
        if lease.phase is not LeasePhase.READY:
            raise errors.LeaseEndedError(f"lease {lease_name} is not active ({lease.reason or lease.phase.value})")
        queue: asyncio.Queue[Offer | None] = asyncio.Queue(LISTEN_QUEUE)
        queues = self._listening.setdefault(lease.key, [])
        queues.append(queue)
        self.coordinator.notify_changed()  # a Dial may be waiting for this listener
        try:
            while (offer := await queue.get()) is not None:
                yield offer
        finally:
            with contextlib.suppress(ValueError):
                queues.remove(queue)
            if not queues and self._listening.get(lease.key) is queues:
                del self._listening[lease.key]

    def _blocker(self, lease: Lease) -> tuple[Exception, bool] | None:
        """Why a connection to the lease's exporter cannot be made now, and whether waiting may help."""
        name = lease.name
        if lease.phase is LeasePhase.PENDING:
            return errors.ExporterNotReadyError(f"lease {name} is still waiting for an exporter"), False
        if lease.phase is not LeasePhase.READY or not lease.exporter:
            detail = f"{lease.reason}: {lease.message}" if lease.reason else lease.message or lease.phase.value
            return errors.LeaseEndedError(f"lease {name} has ended ({detail})"), False
        presence = self.coordinator.presence.get((lease.namespace, lease.exporter))
        if presence is None or not presence.online:
            return errors.ConnectionLostError(f"exporter {lease.exporter} of lease {name} is offline"), True
        if presence.status is S.BEFORE_LEASE_HOOK_FAILED:
            failed = f"beforeLease hook failed on {lease.exporter}: {presence.message}"
            return errors.ExporterNotReadyError(failed), False
        if presence.status is not S.LEASE_READY:
            state = presence.status.name.lower().replace("_", " ")
            return errors.ExporterNotReadyError(f"exporter {lease.exporter} is not ready yet ({state})"), True
        if not self._listening.get(lease.key):
            waiting = f"exporter {lease.exporter} is not listening for lease {name} yet"
            return errors.ExporterNotReadyError(waiting), True
        return None

    async def dial(
        self,
        client: Identity,
        namespace: str,
        lease_name: str,
        budget: float | None = None,
        data_plane: bool = False,
    ) -> Offer:
        """An offer to reach the exporter of the client's lease; waits up to DIAL_WAIT (or the
        caller's `budget` of seconds, less a margin) for the exporter to be ready. `data_plane`:
        the client asks to meet at the router's data port (granted when the router has one)."""
        wait = DIAL_WAIT if budget is None else max(0.0, min(DIAL_WAIT, budget - 0.5))
        deadline = time.monotonic() + wait
        while True:
            lease = self.coordinator.get_lease(client, namespace, lease_name)
            blocker = self._blocker(lease)
            if blocker is None:
                break
            error, may_wait = blocker
            remaining = deadline - time.monotonic()
            if not may_wait or remaining <= 0:
                raise error
            await self.coordinator.wait_changed(remaining)
        assert lease.exporter is not None
        exporter = self.coordinator.get_identity(Kind.EXPORTER, lease.namespace, lease.exporter)
        endpoint = self.routers.choose(exporter.effective_labels)
        data_endpoint = self.routers.data_endpoint(endpoint) if data_plane else None
        token, _ = mint(self.signer, lease.namespace, lease.name, data_endpoint=data_endpoint)
        offer = Offer(endpoint, token)
        queue = self._listening[lease.key][-1]  # the newest Listen stream: an older one may be half-dead
        try:
            queue.put_nowait(offer)
        except asyncio.QueueFull:
            raise errors.ExporterBusyError(f"exporter {lease.exporter} is not taking connections fast enough") from None
        return offer
