"""Exporters on the controller: they register, hold Status streams (online while one is open) and
report their status; clients list them. Connection state lives in `Presence`, never in the store
(mixed into the `Coordinator`, which supplies the store and the scheduling these changes trigger)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from jumpstarter.controller import leasing
from jumpstarter.controller.lease_watchers import LeaseWatchers
from jumpstarter.controller.model import EndReason, Identity, Kind, Lease, LeasePhase
from jumpstarter.controller.presence import Assignment, ExporterInfo, Key, Presence
from jumpstarter.controller.selectors import parse_selector
from jumpstarter.controller.store.base import Store
from jumpstarter.exporter.status import ExporterStatus

log = logging.getLogger("jumpstarter.controller")


class Exporters:
    """Exporter registration, Status streams, status reports and listings."""

    # supplied by the Coordinator
    store: Store
    clock: Callable[[], float]
    presence: dict[Key, Presence]
    watchers: LeaseWatchers
    _wake: asyncio.Event
    get_identity: Callable[[Kind, str, str], Identity]
    notify_changed: Callable[[], None]
    _end: Callable[[Lease, EndReason, str], None]
    _reschedule: Callable[[], None]

    def register(self, namespace: str, name: str, labels: dict[str, str]) -> Identity:
        """An exporter announces itself and the labels of its driver tree."""
        identity = self.get_identity(Kind.EXPORTER, namespace, name)
        identity.reported_labels = dict(labels)
        self.store.put_identity(identity)
        self.presence.setdefault((namespace, name), Presence()).last_seen = self.clock()
        self._reschedule()
        return identity

    async def status_stream(self, namespace: str, name: str) -> AsyncIterator[Assignment]:
        """Lease assignments for an exporter, starting with the current one; it is online while
        this iterates and offline as soon as the last stream closes."""
        self.get_identity(Kind.EXPORTER, namespace, name)
        key = (namespace, name)
        presence = self.presence.setdefault(key, Presence())
        queue: asyncio.Queue[Assignment | None] = asyncio.Queue()
        came_online = not presence.streams
        if came_online:
            self._touch_exporter(key)
        presence.streams.append(queue)
        presence.last_seen = self.clock()
        presence.offline_since = None
        queue.put_nowait(self._assignment_of(key))
        if came_online and presence.status is ExporterStatus.AVAILABLE and not presence.draining:
            self._reschedule()  # it reported AVAILABLE before this stream opened: it is free now
        log.info("exporter %s/%s online", namespace, name)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            with contextlib.suppress(ValueError):
                presence.streams.remove(queue)
            if not presence.streams:
                presence.status, presence.message = ExporterStatus.OFFLINE, "connection lost"
                presence.offline_since = self.clock()
                log.info("exporter %s/%s offline", namespace, name)
                self._touch_exporter(key)
                self.notify_changed()
                self._wake.set()  # its lease ends after the grace period

    def report_status(
        self, namespace: str, name: str, status: ExporterStatus, message: str, release: bool = False
    ) -> None:
        """An exporter's status changed; `release` ends its current lease."""
        presence = self.presence.setdefault((namespace, name), Presence())
        was_free = presence.online and presence.status is ExporterStatus.AVAILABLE and not presence.draining
        presence.status, presence.message, presence.last_seen = status, message, self.clock()
        ended = False
        if release or status in (ExporterStatus.BEFORE_LEASE_HOOK_FAILED, ExporterStatus.AFTER_LEASE_HOOK_FAILED):
            for lease in self.store.list_leases(namespace, active_only=True):
                if lease.exporter == name and (release or status is ExporterStatus.BEFORE_LEASE_HOOK_FAILED):
                    self._end(lease, EndReason.RELEASED, message or "released by the exporter")
                    ended = True
        if status is ExporterStatus.AVAILABLE:  # after a release too: its session is already over
            presence.draining = False
        if ended or (status is ExporterStatus.AVAILABLE and not was_free and self._wanted((namespace, name))):
            self._reschedule()
        else:  # it cannot have become free: nothing to hand out (deadlines are run()'s business)
            self.notify_changed()

    def list_exporters(self, namespace: str, selector: str = "") -> list[ExporterInfo]:
        """Exporters of a namespace matching a label selector, with their state."""
        wanted = parse_selector(selector)
        active = self.store.list_leases(namespace, active_only=True)
        held = {lease.exporter: lease for lease in active if lease.exporter}
        found = []
        for identity in self.store.list_identities(Kind.EXPORTER, namespace):
            if not wanted.matches(identity.effective_labels):
                continue
            presence = self.presence.get(identity.key) or Presence()
            found.append(ExporterInfo(
                identity, presence.online, presence.status, presence.message, held.get(identity.name)
            ))
        return found

    def get_exporter(self, namespace: str, name: str) -> ExporterInfo:
        """One exporter with its state."""
        identity = self.get_identity(Kind.EXPORTER, namespace, name)
        presence = self.presence.get(identity.key) or Presence()
        held = [lease for lease in self.store.list_leases(namespace, active_only=True) if lease.exporter == name]
        return ExporterInfo(identity, presence.online, presence.status, presence.message, held[0] if held else None)

    def _assignment_of(self, key: Key) -> Assignment:
        for lease in self.store.list_leases(key[0], active_only=True):
            if lease.exporter == key[1] and lease.phase is LeasePhase.READY:
                return Assignment(True, lease.name, lease.client)
        return Assignment(False)

    def _wanted(self, key: Key) -> bool:
        """Whether some waiting lease could take exporter `key` (else freeing it changes nothing)."""
        pending = [lease for lease in self.store.list_leases(key[0], active_only=True)
                   if lease.phase is LeasePhase.PENDING]
        if not pending:
            return False
        identity = self.store.get_identity(Kind.EXPORTER, *key)
        labels = identity.effective_labels if identity is not None else {}
        return any(
            lease.exporter_name in (None, key[1]) and leasing.selector(lease.selector).matches(labels)
            for lease in pending
        )

    def _touch_exporter(self, key: Key) -> None:
        """Wake the watchers of the leases an exporter holds (it came or went)."""
        if not self.watchers:
            return
        for lease in self.store.list_leases(key[0], active_only=True):
            if lease.exporter == key[1]:
                self.watchers.touch(lease.key)
