"""The `Store` seam: everything the controller must not forget across restarts.

Implementations: `sqlite.SqliteStore` (embedded, the default); a Kubernetes CRD store is planned.
Methods are synchronous and fast (local storage); every write is durable when it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from jumpstarter.controller.model import Identity, Kind, Lease, Policy


@dataclass(slots=True, frozen=True)
class SigningKey:
    """A token signing key: its id, private key (PEM) and when it was made / retired."""

    kid: str
    private_pem: bytes
    created: float
    retired: float | None = None


class Store(Protocol):
    """Persistent controller state."""

    def put_identity(self, identity: Identity) -> None:
        """Create or replace an identity."""
        ...

    def get_identity(self, kind: Kind, namespace: str, name: str) -> Identity | None:
        """One identity, or None."""
        ...

    def identity_by_username(self, username: str) -> Identity | None:
        """The identity an OIDC username maps to, or None (usernames are unique)."""
        ...

    def delete_identity(self, kind: Kind, namespace: str, name: str) -> bool:
        """Delete an identity; False when there was none."""
        ...

    def list_identities(self, kind: Kind, namespace: str | None = None) -> list[Identity]:
        """Identities of a kind (in one namespace, or all), sorted by namespace and name."""
        ...

    @property
    def identities_version(self) -> int:
        """A number that changes whenever an identity is written or deleted (what the scheduler
        derives from the identities is kept until it changes)."""
        ...

    def put_lease(self, lease: Lease) -> None:
        """Create or replace a lease."""
        ...

    def get_lease(self, namespace: str, name: str) -> Lease | None:
        """One lease, or None."""
        ...

    def list_leases(self, namespace: str | None = None, active_only: bool = False) -> list[Lease]:
        """Leases in creation order."""
        ...

    def put_policy(self, policy: Policy) -> None:
        """Create or replace an access policy."""
        ...

    def delete_policy(self, namespace: str, name: str) -> bool:
        """Delete an access policy; False when there was none."""
        ...

    def list_policies(self, namespace: str | None = None) -> list[Policy]:
        """Access policies."""
        ...

    def add_signing_key(self, key: SigningKey) -> None:
        """Keep a new signing key."""
        ...

    def retire_signing_key(self, kid: str, when: float) -> None:
        """Stop accepting tokens signed with `kid`."""
        ...

    def signing_keys(self) -> list[SigningKey]:
        """Every signing key, oldest first."""
        ...

    def close(self) -> None:
        """Release the storage."""
        ...
