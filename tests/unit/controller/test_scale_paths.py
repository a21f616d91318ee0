"""The shortcuts that keep the controller fast with many exporters give the same answers as the
long way: selector matches shared within a scheduling pass, the store's identity cache, and
scheduling passes skipped when nothing can have become free."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jumpstarter.controller import leasing
from jumpstarter.controller.coordinator import Assignment, Coordinator
from jumpstarter.controller.leasing import ExporterView, candidates
from jumpstarter.controller.model import Identity, Kind, Lease, LeasePhase, Policy
from jumpstarter.controller.store.sqlite import SqliteStore
from jumpstarter.exporter.status import ExporterStatus

NS = "default"


def _exporters() -> list[ExporterView]:
    return [
        ExporterView(NS, f"e{i}", {"board": "rpi" if i % 2 else "x86", "site": f"s{i % 3}"},
                     online=True, status=ExporterStatus.AVAILABLE)
        for i in range(12)
    ] + [ExporterView("other", "far", {"board": "rpi"}, online=True, status=ExporterStatus.AVAILABLE)]


def _lease(client: str, selector: str, exporter_name: str | None = None, duration: float = 60) -> Lease:
    return Lease(NS, f"{client}-{selector}-{exporter_name}", client, selector, duration, 0.0,
                 exporter_name=exporter_name)


@pytest.mark.parametrize("policies", [
    [],
    [Policy(NS, "rpi-for-alice", exporter_selector="board=rpi", clients=("alice",))],
    [Policy(NS, "short", exporter_selector="site=s1", clients=("alice", "bob"), maximum_duration=30)],
])
def test_shared_selector_matches_give_every_lease_its_own_candidates(policies: list[Policy]) -> None:
    exporters = _exporters()
    clients = {name: Identity(Kind.CLIENT, NS, name) for name in ("alice", "bob")}
    leases = [
        _lease("alice", "board=rpi"), _lease("bob", "board=rpi"), _lease("bob", "board=rpi", duration=10),
        _lease("alice", "board=rpi", exporter_name="e3"), _lease("bob", "site=s1"), _lease("alice", "site=s1"),
    ]
    matched: leasing.Matched = {}
    for lease in leases:
        client = clients[lease.client]
        alone = candidates(lease, exporters, policies, client)
        assert candidates(lease, exporters, policies, client, matched) == alone
        assert candidates(lease, exporters, policies, None, matched) == []
    assert len(matched) == 3  # one match per distinct (namespace, selector, pinned name)
    assert [e.name for e in candidates(leases[3], exporters, [], clients["alice"], matched)] == ["e3"]
    outsider = Identity(Kind.CLIENT, "other", "carol")
    assert candidates(_lease("carol", "board=rpi"), exporters, [], outsider, {}) == []


def test_the_identity_cache_hands_out_copies_and_follows_every_write(tmp_path: Path) -> None:
    store = SqliteStore.in_directory(tmp_path)
    store.put_identity(Identity(Kind.EXPORTER, NS, "b", labels={"board": "rpi"}))
    store.put_identity(Identity(Kind.EXPORTER, NS, "a", labels={"board": "x86"}))
    store.put_identity(Identity(Kind.CLIENT, NS, "alice"))
    assert [i.name for i in store.list_identities(Kind.EXPORTER)] == ["a", "b"]

    got = store.get_identity(Kind.EXPORTER, NS, "b")
    assert got is not None
    got.labels["board"] = "changed"
    got.token_generation = 9
    listed = store.list_identities(Kind.EXPORTER)[1]
    listed.reported_labels["x"] = "y"
    again = store.get_identity(Kind.EXPORTER, NS, "b")
    assert again is not None and (again.labels, again.reported_labels, again.token_generation) == (
        {"board": "rpi"}, {}, 1)

    store.put_identity(got)
    store.put_identity(Identity(Kind.EXPORTER, "lab", "c"))
    assert store.delete_identity(Kind.EXPORTER, NS, "a")
    assert not store.delete_identity(Kind.EXPORTER, NS, "a")
    assert [i.key for i in store.list_identities(Kind.EXPORTER)] == [(NS, "b"), ("lab", "c")]
    assert [i.name for i in store.list_identities(Kind.EXPORTER, "lab")] == ["c"]
    assert store.get_identity(Kind.EXPORTER, NS, "b").token_generation == 9  # type: ignore[union-attr]
    store.close()

    reopened = SqliteStore.in_directory(tmp_path)  # the file says the same as the cache did
    assert [(i.key, i.labels, i.token_generation) for i in reopened.list_identities(Kind.EXPORTER)] == [
        ((NS, "b"), {"board": "changed"}, 9), (("lab", "c"), {}, 1)]
    assert [i.name for i in reopened.list_identities(Kind.CLIENT)] == ["alice"]


async def _next(stream: object) -> Assignment:
    return await asyncio.wait_for(stream.__anext__(), 2)  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_released_exporter_is_handed_on_only_once_it_reports_available(tmp_path: Path) -> None:
    coordinator = Coordinator(SqliteStore.in_directory(tmp_path))
    alice = coordinator.create_identity(Kind.CLIENT, NS, "alice", {})
    bob = coordinator.create_identity(Kind.CLIENT, NS, "bob", {})
    coordinator.create_identity(Kind.EXPORTER, NS, "board", {"board": "rpi"})
    coordinator.create_identity(Kind.EXPORTER, NS, "spare", {"board": "x86"})
    stream = coordinator.status_stream(NS, "board")
    assert await _next(stream) == Assignment(False)
    coordinator.report_status(NS, "board", ExporterStatus.AVAILABLE, "")
    first = coordinator.create_lease(alice, "board=rpi", 60)
    assert await _next(stream) == Assignment(True, first.name, "alice")
    coordinator.report_status(NS, "board", ExporterStatus.LEASE_READY, "")
    coordinator.report_status(NS, "board", ExporterStatus.LEASE_READY, "")  # reported twice, as exporters do
    second = coordinator.create_lease(bob, "board=rpi", 60)
    assert coordinator.positions[second.key] == 1

    coordinator.release_lease(alice, NS, first.name)
    assert await _next(stream) == Assignment(False, first.name, "alice")
    assert coordinator.get_lease(None, NS, second.name).phase is LeasePhase.PENDING  # still draining
    coordinator.report_status(NS, "spare", ExporterStatus.AVAILABLE, "")  # no waiting lease wants it
    assert coordinator.get_lease(None, NS, second.name).phase is LeasePhase.PENDING
    coordinator.report_status(NS, "board", ExporterStatus.AVAILABLE, "")
    assert coordinator.get_lease(None, NS, second.name).phase is LeasePhase.READY
    assert await _next(stream) == Assignment(True, second.name, "bob")
    await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_an_exporter_that_reported_before_its_stream_opened_gets_the_waiting_lease(tmp_path: Path) -> None:
    coordinator = Coordinator(SqliteStore.in_directory(tmp_path))
    alice = coordinator.create_identity(Kind.CLIENT, NS, "alice", {})
    coordinator.create_identity(Kind.EXPORTER, NS, "board", {"board": "rpi"})
    waiting = coordinator.create_lease(alice, "board=rpi", 60)
    coordinator.report_status(NS, "board", ExporterStatus.AVAILABLE, "")  # its Status stream is not open yet
    assert coordinator.get_lease(None, NS, waiting.name).phase is LeasePhase.PENDING
    stream = coordinator.status_stream(NS, "board")
    assert await _next(stream) == Assignment(False)
    assert await _next(stream) == Assignment(True, waiting.name, "alice")
    await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_the_run_loop_still_expires_leases_on_time(tmp_path: Path) -> None:
    coordinator = Coordinator(SqliteStore.in_directory(tmp_path))
    alice = coordinator.create_identity(Kind.CLIENT, NS, "alice", {})
    coordinator.create_identity(Kind.EXPORTER, NS, "board", {"board": "rpi"})
    stream = coordinator.status_stream(NS, "board")
    assert await _next(stream) == Assignment(False)
    coordinator.report_status(NS, "board", ExporterStatus.AVAILABLE, "")
    runner = asyncio.ensure_future(coordinator.run())
    try:
        lease = coordinator.create_lease(alice, "board=rpi", 0.2)
        assert await _next(stream) == Assignment(True, lease.name, "alice")
        assert (await _next(stream)).leased is False  # ended by run() at its end time, no other event
        assert coordinator.get_lease(None, NS, lease.name).reason == "Expired"
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await stream.aclose()  # type: ignore[attr-defined]


def test_matches_kept_across_passes_still_see_who_is_free_now() -> None:
    clients = {(NS, "alice"): Identity(Kind.CLIENT, NS, "alice")}
    waiting = _lease("alice", "board=rpi")
    busy = [ExporterView(NS, f"e{i}", {"board": "rpi"}, online=True, status=ExporterStatus.LEASE_READY,
                         leased_by="other") for i in range(3)]
    matched: leasing.Matched = {}
    first = leasing.schedule(0.0, [waiting], busy, [], clients, matched)
    assert first.assignments == [] and first.positions == {waiting.key: 1}
    assert matched == {(NS, "board=rpi", None): [0, 1, 2]}
    now_free = [*busy[:2], ExporterView(NS, "e2", {"board": "rpi"}, online=True, status=ExporterStatus.AVAILABLE)]
    second = leasing.schedule(1.0, [waiting], now_free, [], clients, matched)
    assert [(lease.name, e.name) for lease, e in second.assignments] == [(waiting.name, "e2")]


def test_the_active_lease_cache_follows_every_write_and_ended_leases_come_from_the_file(tmp_path: Path) -> None:
    store = SqliteStore.in_directory(tmp_path)
    first = Lease(NS, "first", "alice", "board=rpi", 60, 1.0, seq=1, tags={"ci": "1"})
    second = Lease("lab", "second", "bob", "board=x86", 60, 2.0, seq=2)
    store.put_lease(second)
    store.put_lease(first)
    assert [lease.name for lease in store.list_leases(active_only=True)] == ["first", "second"]
    assert [lease.name for lease in store.list_leases("lab", active_only=True)] == ["second"]

    got = store.get_lease(NS, "first")
    assert got is not None
    got.tags["ci"] = "changed"
    got.phase = LeasePhase.READY
    assert store.list_leases(NS, active_only=True)[0].tags == {"ci": "1"}  # a copy was changed

    store.put_lease(got)
    assert store.list_leases(NS, active_only=True)[0].phase is LeasePhase.READY
    got.phase, got.reason = LeasePhase.ENDED, "Released"
    store.put_lease(got)
    assert [lease.name for lease in store.list_leases(active_only=True)] == ["second"]
    ended = store.get_lease(NS, "first")
    assert ended is not None
    assert (ended.phase, ended.reason, ended.tags) == (LeasePhase.ENDED, "Released", {"ci": "changed"})
    assert [lease.name for lease in store.list_leases()] == ["first", "second"]
    store.close()

    reopened = SqliteStore.in_directory(tmp_path)
    assert [(lease.name, lease.phase) for lease in reopened.list_leases(active_only=True)] == [
        ("second", LeasePhase.PENDING)]
    assert reopened.get_lease(NS, "first").reason == "Released"  # type: ignore[union-attr]
