"""The coordinator (real SQLite store) managing leases: scheduled begin times, duration and begin
time changes, transfers, and access policies taking effect at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from jumpstarter.controller.coordinator import Assignment, Coordinator
from jumpstarter.controller.model import Identity, Kind, LeasePhase, Policy
from jumpstarter.controller.store.sqlite import SqliteStore
from jumpstarter.errors import AlreadyExistsError, ArgumentError, NotFoundError, PermissionDeniedError
from jumpstarter.exporter.status import ExporterStatus
from tests.unit.controller.clock import Clock

pytestmark = pytest.mark.anyio
NS = "default"



def setup(tmp_path: Path, clock: Clock) -> tuple[Coordinator, Identity, Identity]:
    coordinator = Coordinator(SqliteStore.in_directory(tmp_path), clock)
    alice = coordinator.create_identity(Kind.CLIENT, NS, "alice", {})
    bob = coordinator.create_identity(Kind.CLIENT, NS, "bob", {"team": "qa"})
    coordinator.create_identity(Kind.EXPORTER, NS, "board", {"board": "rpi"})
    return coordinator, alice, bob


async def online(coordinator: Coordinator, name: str = "board") -> object:
    stream = coordinator.status_stream(NS, name)
    assert await asyncio.wait_for(stream.__anext__(), 2) == Assignment(False)
    coordinator.report_status(NS, name, ExporterStatus.AVAILABLE, "")
    return stream


async def test_scheduled_lease_waits_for_its_begin_time(tmp_path: Path) -> None:
    clock = Clock()
    coordinator, alice, _ = setup(tmp_path, clock)
    stream = await online(coordinator)
    lease = coordinator.create_lease(alice, "board=rpi", 60, begin_time=1100.0)
    assert (lease.phase, lease.begin_time) == (LeasePhase.PENDING, 1100.0)
    clock.now = 1099.0
    coordinator._reschedule()
    assert coordinator.get_lease(None, NS, lease.name).phase is LeasePhase.PENDING
    clock.now = 1100.5
    coordinator._reschedule()
    granted = coordinator.get_lease(None, NS, lease.name)
    assert (granted.phase, granted.effective_begin, granted.effective_end) == (LeasePhase.READY, 1100.5, 1160.5)
    await stream.aclose()  # type: ignore[attr-defined]


async def test_past_begin_time_means_now_and_nonsense_is_refused(tmp_path: Path) -> None:
    coordinator, alice, _ = setup(tmp_path, Clock())
    lease = coordinator.create_lease(alice, "board=rpi", 60, begin_time=10.0)
    assert lease.begin_time is None
    with pytest.raises(ArgumentError, match="invalid begin time"):
        coordinator.create_lease(alice, "board=rpi", 60, begin_time=float("nan"))


async def test_run_pushes_the_exporter_at_the_begin_time(tmp_path: Path) -> None:
    coordinator, alice, _ = setup(tmp_path, Clock())
    coordinator.clock = time.time  # the real clock: run() sleeps until the begin time
    stream = await online(coordinator)
    runner = asyncio.create_task(coordinator.run())
    try:
        begin = time.time() + 0.3
        lease = coordinator.create_lease(alice, "board=rpi", 60, begin_time=begin)
        assert lease.phase is LeasePhase.PENDING
        assignment = await asyncio.wait_for(stream.__anext__(), 5)  # type: ignore[attr-defined]
        assert assignment == Assignment(True, lease.name, "alice")
        assert time.time() >= begin
        assert coordinator.get_lease(None, NS, lease.name).effective_begin >= begin  # type: ignore[operator]
    finally:
        runner.cancel()
        await stream.aclose()  # type: ignore[attr-defined]


async def test_update_duration_of_an_active_lease(tmp_path: Path) -> None:
    clock = Clock()
    coordinator, alice, _ = setup(tmp_path, clock)
    stream = await online(coordinator)
    lease = coordinator.create_lease(alice, "board=rpi", 600)
    assert lease.effective_end == 1600.0
    clock.now = 1100.0
    longer = coordinator.update_lease(alice, NS, lease.name, 3600)
    assert (longer.effective_begin, longer.effective_end) == (1000.0, 4600.0)
    over = coordinator.update_lease(alice, NS, lease.name, 60)  # would have ended at 1060: ends now
    assert (over.phase, over.reason, over.effective_end) == (LeasePhase.ENDED, "Expired", 1100.0)
    with pytest.raises(ArgumentError, match="has ended"):
        coordinator.update_lease(alice, NS, lease.name, 600)
    await stream.aclose()  # type: ignore[attr-defined]


async def test_update_begin_time(tmp_path: Path) -> None:
    coordinator, alice, _ = setup(tmp_path, Clock())
    waiting = coordinator.create_lease(alice, "board=rpi", 60, begin_time=2000.0)
    assert coordinator.update_lease(alice, NS, waiting.name, begin_time=3000.0).begin_time == 3000.0
    stream = await online(coordinator)
    started = coordinator.create_lease(alice, "board=rpi", 60)
    assert started.phase is LeasePhase.READY
    with pytest.raises(ArgumentError, match="already started"):
        coordinator.update_lease(alice, NS, started.name, begin_time=3000.0)
    await stream.aclose()  # type: ignore[attr-defined]


async def test_transfer(tmp_path: Path) -> None:
    coordinator, alice, bob = setup(tmp_path, Clock())
    stream = await online(coordinator)
    lease = coordinator.create_lease(alice, "board=rpi", 600)
    with pytest.raises(NotFoundError, match="client default/nobody not found"):
        coordinator.update_lease(alice, NS, lease.name, owner="nobody")
    with pytest.raises(PermissionDeniedError):  # only the owner may give it away
        coordinator.update_lease(bob, NS, lease.name, owner="bob")
    moved = coordinator.update_lease(alice, NS, lease.name, owner="bob")
    assert (moved.client, moved.phase, moved.exporter) == ("bob", LeasePhase.READY, "board")
    with pytest.raises(PermissionDeniedError):
        coordinator.get_lease(alice, NS, lease.name)
    assert coordinator.get_lease(bob, NS, lease.name).client == "bob"
    back = coordinator.update_lease(None, NS, lease.name, owner="alice")  # an administrator may
    assert back.client == "alice"
    await stream.aclose()  # type: ignore[attr-defined]


async def test_transfer_respects_policies(tmp_path: Path) -> None:
    coordinator, alice, _ = setup(tmp_path, Clock())
    stream = await online(coordinator)
    lease = coordinator.create_lease(alice, "board=rpi", 600)
    coordinator.put_policy(Policy(NS, "only-alice", "board=rpi", clients=("alice",)))
    with pytest.raises(PermissionDeniedError, match="may not hold exporter 'board'"):
        coordinator.update_lease(alice, NS, lease.name, owner="bob")
    assert coordinator.get_lease(None, NS, lease.name).client == "alice"
    await stream.aclose()  # type: ignore[attr-defined]


async def test_policy_changes_judge_waiting_leases_at_once(tmp_path: Path) -> None:
    coordinator, alice, bob = setup(tmp_path, Clock())
    stream = await online(coordinator)
    held = coordinator.create_lease(alice, "board=rpi", 600)
    waiting = coordinator.create_lease(bob, "board=rpi", 600)
    assert waiting.phase is LeasePhase.PENDING
    coordinator.put_policy(Policy(NS, "only-alice", "board=rpi", clients=("alice",)))
    denied = coordinator.get_lease(None, NS, waiting.name)
    assert denied.phase is LeasePhase.UNSATISFIABLE
    assert "no access policy admits client 'bob'" in denied.message
    assert coordinator.get_lease(None, NS, held.name).phase is LeasePhase.READY  # running leases keep going

    with pytest.raises(AlreadyExistsError):
        coordinator.put_policy(Policy(NS, "only-alice", "board=rpi", clients=("alice",)))
    coordinator.put_policy(Policy(NS, "only-alice", "board=rpi", client_selector="team=qa"), replace=True)
    assert coordinator.get_policy(NS, "only-alice").client_selector == "team=qa"  # type: ignore[union-attr]
    with pytest.raises(ArgumentError, match="exporter selector: invalid selector"):
        coordinator.put_policy(Policy(NS, "bad", "board in (rpi"))

    coordinator.delete_policy(NS, "only-alice")
    with pytest.raises(NotFoundError):
        coordinator.delete_policy(NS, "only-alice")
    assert coordinator.store.list_policies() == []
    await stream.aclose()  # type: ignore[attr-defined]
