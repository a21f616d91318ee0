"""The coordinator with a real SQLite store and a fake clock: pushes to Status streams, queueing,
expiry, offline on stream close, restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jumpstarter.controller.coordinator import Assignment, Coordinator
from jumpstarter.controller.model import Kind, LeasePhase
from jumpstarter.controller.store.sqlite import SqliteStore
from jumpstarter.errors import PermissionDeniedError
from jumpstarter.exporter.status import ExporterStatus
from tests.unit.controller.clock import Clock

pytestmark = pytest.mark.anyio
NS = "default"



async def next_item(stream: object) -> Assignment:
    return await asyncio.wait_for(stream.__anext__(), 2)  # type: ignore[attr-defined]


async def test_lease_lifecycle(tmp_path: Path) -> None:
    clock = Clock()
    coordinator = Coordinator(SqliteStore.in_directory(tmp_path), clock)
    alice = coordinator.create_identity(Kind.CLIENT, NS, "alice", {})
    bob = coordinator.create_identity(Kind.CLIENT, NS, "bob", {})
    coordinator.create_identity(Kind.EXPORTER, NS, "board", {"board": "rpi"})
    stream = coordinator.status_stream(NS, "board")
    assert await next_item(stream) == Assignment(False)
    coordinator.report_status(NS, "board", ExporterStatus.AVAILABLE, "")

    first = coordinator.create_lease(alice, "board=rpi", 60)
    assert first.phase is LeasePhase.READY and first.effective_end == 1060.0
    assert await next_item(stream) == Assignment(True, first.name, "alice")
    coordinator.report_status(NS, "board", ExporterStatus.LEASE_READY, "")

    second = coordinator.create_lease(bob, "board=rpi", 30)
    assert second.phase is LeasePhase.PENDING
    assert coordinator.positions[second.key] == 1
    with pytest.raises(PermissionDeniedError):
        coordinator.release_lease(bob, NS, first.name)

    clock.now = 1060.0  # alice's lease expires
    coordinator._reschedule()
    assert coordinator.get_lease(None, NS, first.name).reason == "Expired"
    assert (await next_item(stream)).leased is False
    # not handed on until the exporter has finished the old lease and says so
    assert coordinator.get_lease(None, NS, second.name).phase is LeasePhase.PENDING
    coordinator.report_status(NS, "board", ExporterStatus.AVAILABLE, "")
    assert coordinator.get_lease(None, NS, second.name).phase is LeasePhase.READY
    assert await next_item(stream) == Assignment(True, second.name, "bob")

    await stream.aclose()  # type: ignore[attr-defined]
    info = coordinator.get_exporter(NS, "board")
    assert (info.online, info.status) == (False, ExporterStatus.OFFLINE)

    coordinator.store.close()  # the old controller is gone (one per data directory)
    restarted = Coordinator(SqliteStore.in_directory(tmp_path), clock)
    again = restarted.status_stream(NS, "board")
    assert await next_item(again) == Assignment(True, second.name, "bob")  # told its lease on reconnect
    await again.aclose()  # type: ignore[attr-defined]


async def test_deleting_a_client_ends_its_leases(tmp_path: Path) -> None:
    coordinator = Coordinator(SqliteStore.in_directory(tmp_path), Clock())
    alice = coordinator.create_identity(Kind.CLIENT, NS, "alice", {})
    coordinator.create_identity(Kind.EXPORTER, NS, "board", {"board": "rpi"})
    lease = coordinator.create_lease(alice, "board=rpi", 60)
    assert lease.phase is LeasePhase.PENDING  # exporter offline: waits
    coordinator.delete_identity(Kind.CLIENT, NS, "alice")
    assert coordinator.get_lease(None, NS, lease.name).phase is LeasePhase.ENDED
