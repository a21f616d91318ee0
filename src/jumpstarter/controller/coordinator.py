"""The controller's live state: leases, and applying scheduling decisions as things change.

Persistent facts go through the `Store`; connection state (online, reported status, open Status
streams) lives in memory only, so after a restart every exporter is offline until it reconnects.
Nothing here knows about gRPC: the servicers translate. Identities (`identities`), exporters'
connections (`exporters`) and access policies (`policies`) are mixed in from their own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable

from jumpstarter.controller import leasing
from jumpstarter.controller.exporters import Exporters
from jumpstarter.controller.identities import Identities
from jumpstarter.controller.lease_watchers import LeaseWatchers
from jumpstarter.controller.model import DEFAULT_NAMESPACE, EndReason, Identity, Kind, Lease, LeasePhase
from jumpstarter.controller.policies import AccessPolicies
from jumpstarter.controller.presence import Assignment, ExporterInfo, Key, Presence
from jumpstarter.controller.store.base import Store
from jumpstarter.errors import AlreadyExistsError, ArgumentError, NotFoundError, PermissionDeniedError

__all__ = ["OFFLINE_GRACE", "Assignment", "Coordinator", "ExporterInfo", "default_namespace"]

log = logging.getLogger("jumpstarter.controller")
#: Seconds an exporter holding a lease may stay offline (reconnecting) before the lease ends.
OFFLINE_GRACE = 30.0


class Coordinator(Identities, Exporters, AccessPolicies):
    """Identities, exporters and leases, with scheduling applied as things change."""

    def __init__(
        self, store: Store, clock: Callable[[], float] = time.time, offline_grace: float = OFFLINE_GRACE
    ) -> None:
        self.store = store
        self.clock = clock
        self.offline_grace = offline_grace
        self.started = clock()
        #: called with a lease whenever it is granted or ends (the router closes its streams)
        self.lease_listeners: list[Callable[[Lease], None]] = []
        #: called with an identity once it is deleted (the router registry drops a deleted router)
        self.deletion_listeners: list[Callable[[Identity], None]] = []
        #: the watchers of each lease (`lease_updates`), woken on every change to it
        self.watchers = LeaseWatchers()
        self._changed = asyncio.Event()
        self.presence: dict[Key, Presence] = {}
        self.positions: dict[Key, int] = {}
        #: (store.identities_version, [(key, effective labels, enabled)] of every exporter) and the
        #: selector matches against them: rebuilt only when an identity changes
        self._exporters: tuple[int, list[tuple[Key, dict[str, str], bool]]] | None = None
        self._matched: leasing.Matched = {}
        leases = store.list_leases()
        self._seq = max((lease.seq for lease in leases), default=0)
        self._wake = asyncio.Event()

    # ---- leases -------------------------------------------------------------------------------
    def create_lease(
        self,
        client: Identity,
        selector: str,
        duration: float,
        *,
        name: str = "",
        exporter_name: str | None = None,
        begin_time: float | None = None,
        tags: dict[str, str] | None = None,
    ) -> Lease:
        """Record a lease request and schedule at once (a free exporter is granted before this returns)."""
        name = name or str(uuid.uuid4())
        begin_time = self._begin_time(begin_time)
        if self.store.get_lease(client.namespace, name) is not None:
            raise AlreadyExistsError(f"lease {client.namespace}/{name} already exists")
        self._seq += 1
        lease = Lease(
            namespace=client.namespace, name=name, client=client.name, selector=selector.strip(), duration=duration,
            created=self.clock(), seq=self._seq, exporter_name=exporter_name or None, begin_time=begin_time,
            tags=dict(tags or {}),
        )
        invalid = leasing.validate(lease)
        if invalid is not None:
            raise ArgumentError(invalid)
        self.store.put_lease(lease)
        self._reschedule()
        return self.store.get_lease(lease.namespace, lease.name) or lease

    def get_lease(self, client: Identity | None, namespace: str, name: str) -> Lease:
        """A lease; a client may only see its own (PermissionDeniedError otherwise)."""
        lease = self.store.get_lease(namespace, name)
        if lease is None:
            raise NotFoundError(f"lease {namespace}/{name} not found")
        if client is not None and (client.namespace != namespace or client.name != lease.client):
            raise PermissionDeniedError(f"lease {namespace}/{name} belongs to another client")
        return lease

    def list_leases(self, namespace: str, client: str | None, only_active: bool) -> list[Lease]:
        """Leases of a namespace (of one client when `client` is given)."""
        return [
            lease for lease in self.store.list_leases(namespace, active_only=only_active)
            if client is None or lease.client == client
        ]

    def update_lease(
        self, client: Identity | None, namespace: str, name: str, duration: float | None = None, *,
        begin_time: float | None = None, owner: str | None = None,
    ) -> Lease:
        """Change a lease: its duration (an active lease keeps its begin time, so its end moves and
        a duration already over ends it as Expired), its begin time (only before it starts) and its
        owner (`owner`, a client of the same namespace). Only the owner (`client`) or an
        administrator (`client` None) may; the access policies must allow the changed lease."""
        lease = self.get_lease(client, namespace, name)
        if not lease.active:
            raise ArgumentError(f"lease {namespace}/{name} has ended ({lease.reason or lease.phase.value})")
        holder = client if client is not None else self.get_identity(Kind.CLIENT, namespace, lease.client)
        if owner is not None and owner != lease.client:
            holder = self.get_identity(Kind.CLIENT, namespace, owner)
            lease.client = owner
        if duration is not None:
            if not math.isfinite(duration) or duration <= 0:
                raise ArgumentError("the duration must be longer than zero")
            lease.duration = duration
            if lease.effective_begin is not None:  # already over: it ends (expires) now
                lease.effective_end = max(lease.effective_begin + duration, self.clock())
        if begin_time is not None:
            if lease.phase is not LeasePhase.PENDING:
                raise ArgumentError(
                    f"lease {namespace}/{name} has already started; only a lease that has not started "
                    "can change its begin time"
                )
            lease.begin_time = self._begin_time(begin_time)
        refusal = leasing.hold_refusal(lease, holder, self._views(self.store.list_leases(active_only=True)),
                                       self.store.list_policies(namespace))
        if refusal is not None:
            raise PermissionDeniedError(refusal)
        self.store.put_lease(lease)
        self._touch_lease(lease.key)
        if owner is not None:
            log.info("lease %s/%s now belongs to client %s", namespace, name, lease.client)
        self._reschedule()
        return self.store.get_lease(namespace, name) or lease

    def _begin_time(self, begin_time: float | None) -> float | None:
        """A requested begin time: None (now) when it has passed already."""
        if begin_time is None:
            return None
        if not math.isfinite(begin_time):
            raise ArgumentError(f"invalid begin time {begin_time!r}")
        return begin_time if begin_time > self.clock() else None

    def release_lease(self, client: Identity | None, namespace: str, name: str) -> Lease:
        """End a lease on the client's request."""
        lease = self.get_lease(client, namespace, name)
        if lease.active:
            was_pending = lease.phase is LeasePhase.PENDING
            self._end(lease, EndReason.RELEASED, "released by the client")
            if was_pending:  # the queue behind it moves up
                self._reschedule()
            else:  # its exporter drains until it reports AVAILABLE: nothing to hand out yet
                self._wake.set()
                self.notify_changed()
        return lease

    # ---- scheduling ---------------------------------------------------------------------------
    def _push(self, key: Key, assignment: Assignment) -> None:
        presence = self.presence.get(key)
        for queue in presence.streams if presence else ():
            queue.put_nowait(assignment)

    def _end(self, lease: Lease, reason: EndReason, message: str) -> None:
        was_ready = lease.phase is LeasePhase.READY
        lease.phase, lease.reason, lease.message = LeasePhase.ENDED, reason.value, message
        if was_ready and lease.effective_end is not None:
            lease.effective_end = min(lease.effective_end, self.clock())
        self.store.put_lease(lease)
        self.positions.pop(lease.key, None)
        if was_ready and lease.exporter:
            key = (lease.namespace, lease.exporter)
            presence = self.presence.get(key)
            if presence is not None and presence.online:
                presence.draining = True
            self._push(key, Assignment(False, lease.name, lease.client))
        log.info("lease %s/%s ended: %s (%s)", lease.namespace, lease.name, reason.value, message)
        self._tell(lease)

    def _exporter_identities(self) -> list[tuple[Key, dict[str, str], bool]]:
        version = self.store.identities_version
        if self._exporters is None or self._exporters[0] != version:
            found = [(i.key, i.effective_labels, i.enabled) for i in self.store.list_identities(Kind.EXPORTER)]
            self._exporters, self._matched = (version, found), {}
        return self._exporters[1]

    def _views(self, leases: list[Lease]) -> list[leasing.ExporterView]:
        held = {(lease.namespace, lease.exporter): lease.name for lease in leases if lease.exporter}
        offline = Presence()
        views = []
        for key, labels, enabled in self._exporter_identities():
            presence = self.presence.get(key) or offline
            views.append(leasing.ExporterView(
                namespace=key[0], name=key[1], labels=labels, online=presence.online, status=presence.status,
                enabled=enabled, leased_by=held.get(key), draining=presence.draining,
            ))
        return views

    def _reschedule(self) -> None:
        """Expire what is due, then hand free exporters to waiting leases, in queue order."""
        now = self.clock()
        active = self.store.list_leases(active_only=True)
        for lease in leasing.expired(now, active):
            self._end(lease, EndReason.EXPIRED, "lease expired")
        for lease in leasing.abandoned(now, active, self._offline_since, self.offline_grace):
            self._end(lease, EndReason.RELEASED, f"exporter {lease.exporter} went offline")
        active = [lease for lease in active if lease.active]
        pending = [lease for lease in active if lease.phase is LeasePhase.PENDING]
        if pending:
            clients = {c.key: c for c in self.store.list_identities(Kind.CLIENT)}
            views = self._views(active)  # (first: it renews the matches when identities changed)
            plan = leasing.schedule(now, pending, views, self.store.list_policies(), clients, self._matched)
            for key, reason in plan.unsatisfiable.items():
                lease = next(lease for lease in pending if lease.key == key)
                lease.phase, lease.message = LeasePhase.UNSATISFIABLE, reason
                self.store.put_lease(lease)
                self.positions.pop(key, None)
                self._touch_lease(key)
            for lease, exporter in plan.assignments:
                lease.phase, lease.exporter = LeasePhase.READY, exporter.name
                lease.effective_begin = now
                lease.effective_end = now + lease.duration
                lease.message = "ready"
                self.store.put_lease(lease)
                self.positions.pop(lease.key, None)
                self._push((lease.namespace, exporter.name), Assignment(True, lease.name, lease.client))
                log.info("lease %s/%s granted: exporter %s", lease.namespace, lease.name, exporter.name)
                self._tell(lease)
            moved = [key for key, position in plan.positions.items()
                     if self.watchers and self.positions.get(key) != position]
            self.positions = dict(plan.positions)
            for key in moved:  # its watchers hear the new queue position at once
                self._touch_lease(key)
        else:
            self.positions = {}
        self._wake.set()
        self.notify_changed()

    def _tell(self, lease: Lease) -> None:
        self._touch_lease(lease.key)
        for listener in self.lease_listeners:
            try:
                listener(lease)
            except Exception:
                log.exception("lease listener failed")

    # ---- lease watching -----------------------------------------------------------------------
    async def lease_updates(
        self, client: Identity | None, namespace: str, name: str
    ) -> AsyncIterator[tuple[Lease, bool]]:
        """A lease with whether its exporter is online: now, then after every change to it or to
        its exporter's connection, until it has ended (pushed: nothing polls)."""
        self.get_lease(client, namespace, name)
        with self.watchers.watch((namespace, name)) as changed:
            while True:
                changed.clear()  # before reading: a change from now on wakes us again
                lease = self.get_lease(client, namespace, name)
                presence = self.presence.get((namespace, lease.exporter)) if lease.exporter else None
                yield lease, presence is not None and presence.online
                if not lease.active:
                    return
                await changed.wait()

    def _touch_lease(self, key: Key) -> None:
        self.watchers.touch(key)

    def notify_changed(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_changed(self, at_most: float) -> None:
        """Wait until something changes (a status report, a lease granted or ended), `at_most` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, at_most)):
                await self._changed.wait()

    def _offline_since(self, key: Key) -> float | None:
        """Since when an exporter has been offline (None while online); unseen since our start: our start."""
        presence = self.presence.get(key)
        if presence is None:
            return self.started
        if presence.online:
            return None
        return presence.offline_since if presence.offline_since is not None else self.started

    async def run(self) -> None:
        """Enforce expiry and scheduled begin times until cancelled."""
        self._reschedule()
        while True:
            # every change reschedules where it happens and wakes us only to recompute the
            # deadline; a pass here is needed only when a deadline comes (a second pass after
            # each change was half the controller's CPU with 1,000 exporters)
            self._wake.clear()
            active = self.store.list_leases(active_only=True)
            deadline = leasing.next_deadline(active)
            lost = leasing.abandon_deadline(active, self._offline_since, self.offline_grace)
            if lost is not None:
                deadline = lost if deadline is None else min(deadline, lost)
            timeout = 30.0 if deadline is None else max(0.0, min(30.0, deadline - self.clock()))
            # (not asyncio.wait_for: on 3.11 it can swallow a cancellation that coincides with the
            # wake-up, and the controller would then hang at shutdown until the next deadline)
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                self._reschedule()


def default_namespace(namespace: str | None) -> str:
    """The namespace to use when none is given."""
    return namespace or DEFAULT_NAMESPACE
