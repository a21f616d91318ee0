"""What the controller knows: identities, leases and access policies (plain dataclasses).

Times are seconds since the Unix epoch (floats), durations are seconds: that is what the store
keeps and what the pure scheduling code compares.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

DEFAULT_NAMESPACE = "default"


class Kind(enum.StrEnum):
    """Kinds of identity that hold tokens."""

    CLIENT = "Client"
    EXPORTER = "Exporter"
    ADMIN = "Admin"
    ROUTER = "Router"


@dataclass(slots=True)
class Identity:
    """A client, exporter or administrator known to the controller.

    `token_generation` is embedded in every token issued to the identity; bumping it (rotation)
    or deleting the identity makes all earlier tokens useless at once."""

    kind: Kind
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    token_generation: int = 1
    created: float = 0.0
    #: Labels an exporter reported when it registered (the administrator's labels win).
    reported_labels: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    #: The user an OIDC token must name (after its issuer's prefix) to act as this identity.
    username: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name)."""
        return (self.namespace, self.name)

    @property
    def effective_labels(self) -> dict[str, str]:
        """The labels leases select on: reported ones overridden by the administrator's."""
        return {**self.reported_labels, **self.labels}


class LeasePhase(enum.StrEnum):
    """Where a lease is in its life; ENDED carries a reason."""

    PENDING = "Pending"
    READY = "Ready"
    UNSATISFIABLE = "Unsatisfiable"
    INVALID = "Invalid"
    ENDED = "Ended"


#: Phases after which a lease never changes again.
FINAL_PHASES = frozenset({LeasePhase.UNSATISFIABLE, LeasePhase.INVALID, LeasePhase.ENDED})


class EndReason(enum.StrEnum):
    """Why a lease ended."""

    RELEASED = "Released"
    EXPIRED = "Expired"


@dataclass(slots=True)
class Lease:
    """A request for an exporter and, once granted, the grant."""

    namespace: str
    name: str
    client: str
    selector: str
    duration: float
    created: float
    seq: int = 0
    exporter_name: str | None = None  # pinned by the client
    begin_time: float | None = None  # requested (scheduled) start
    tags: dict[str, str] = field(default_factory=dict)
    phase: LeasePhase = LeasePhase.PENDING
    exporter: str | None = None  # assigned
    effective_begin: float | None = None
    effective_end: float | None = None
    reason: str = ""
    message: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name)."""
        return (self.namespace, self.name)

    @property
    def active(self) -> bool:
        """Pending or ready (not yet final)."""
        return self.phase not in FINAL_PHASES


@dataclass(slots=True)
class Policy:
    """Which clients (by name or label selector) may lease which exporters (by label selector)."""

    namespace: str
    name: str
    exporter_selector: str = ""
    clients: tuple[str, ...] = ()
    client_selector: str | None = None
    maximum_duration: float | None = None
    #: among exporters a client may lease, ones whose admitting policy has a higher priority go first
    priority: int = 0
