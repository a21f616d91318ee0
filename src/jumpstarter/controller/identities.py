"""Identities on the controller: clients and exporters are created, looked up, have their tokens
rotated and are deleted here (mixed into the `Coordinator`, which supplies the store and the
scheduling these changes trigger)."""

from __future__ import annotations

from collections.abc import Callable

from jumpstarter.controller.auth import check_username
from jumpstarter.controller.model import EndReason, Identity, Kind, Lease
from jumpstarter.controller.presence import Key, Presence
from jumpstarter.controller.store.base import Store
from jumpstarter.errors import AlreadyExistsError, ArgumentError, NotFoundError


class Identities:
    """Create, get, rotate and delete clients and exporters."""

    # supplied by the Coordinator
    store: Store
    clock: Callable[[], float]
    presence: dict[Key, Presence]
    deletion_listeners: list[Callable[[Identity], None]]
    _end: Callable[[Lease, EndReason, str], None]
    _reschedule: Callable[[], None]

    def create_identity(
        self, kind: Kind, namespace: str, name: str, labels: dict[str, str], username: str | None = None
    ) -> Identity:
        """A new client or exporter (acting, when `username` is given, for that OIDC user too);
        AlreadyExistsError when the name or the username is taken."""
        if not name or "/" in name or ":" in name:
            raise ArgumentError(f"invalid name {name!r}")
        if self.store.get_identity(kind, namespace, name) is not None:
            raise AlreadyExistsError(f"{kind.value.lower()} {namespace}/{name} already exists")
        if username is not None:
            check_username(kind, username, self.store.identity_by_username(username))
        identity = Identity(kind, namespace, name, labels=dict(labels), created=self.clock(), username=username)
        self.store.put_identity(identity)
        self._reschedule()
        return identity

    def get_identity(self, kind: Kind, namespace: str, name: str) -> Identity:
        """An identity, or NotFoundError."""
        identity = self.store.get_identity(kind, namespace, name)
        if identity is None:
            raise NotFoundError(f"{kind.value.lower()} {namespace}/{name} not found")
        return identity

    def rotate(self, kind: Kind, namespace: str, name: str) -> Identity:
        """Invalidate every token of an identity (the caller issues a new one)."""
        identity = self.get_identity(kind, namespace, name)
        identity.token_generation += 1
        self.store.put_identity(identity)
        return identity

    def delete_identity(self, kind: Kind, namespace: str, name: str) -> None:
        """Delete an identity: its tokens stop working; its leases end; an exporter is cut off."""
        identity = self.get_identity(kind, namespace, name)
        if not self.store.delete_identity(kind, namespace, name):
            raise NotFoundError(f"{kind.value.lower()} {namespace}/{name} not found")
        for lease in self.store.list_leases(namespace, active_only=True):
            if (kind is Kind.CLIENT and lease.client == name) or (kind is Kind.EXPORTER and lease.exporter == name):
                self._end(lease, EndReason.RELEASED, f"{kind.value.lower()} deleted")
        if kind is Kind.EXPORTER:
            presence = self.presence.pop((namespace, name), None)
            for queue in presence.streams if presence else ():
                queue.put_nowait(None)  # ends the stream
        for listener in self.deletion_listeners:
            listener(identity)
        self._reschedule()
