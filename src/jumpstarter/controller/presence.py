"""What the controller knows about exporters' connections (never stored: after a restart every
exporter is offline until it reconnects), and what it tells them and lists to clients."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from jumpstarter.controller.model import Identity, Lease
from jumpstarter.exporter.status import ExporterStatus

#: (namespace, name) of an exporter or a lease.
Key = tuple[str, str]


@dataclass(slots=True, frozen=True)
class Assignment:
    """What an exporter's Status stream is told: its current lease, or none."""

    leased: bool
    lease_name: str | None = None
    client_name: str | None = None


@dataclass(slots=True)
class Presence:
    """Connection state of one exporter."""

    status: ExporterStatus = ExporterStatus.OFFLINE
    message: str = ""
    streams: list[asyncio.Queue[Assignment | None]] = field(default_factory=list)
    last_seen: float = 0.0
    #: a lease ended here: not free again until the exporter reports AVAILABLE afterwards
    draining: bool = False
    #: when the last Status stream closed (None while online)
    offline_since: float | None = None

    @property
    def online(self) -> bool:
        """Whether a Status stream is open."""
        return bool(self.streams)


@dataclass(slots=True, frozen=True)
class ExporterInfo:
    """An exporter as listed to clients."""

    identity: Identity
    online: bool
    status: ExporterStatus
    message: str
    lease: Lease | None
