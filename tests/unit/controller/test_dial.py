"""Dial and Listen on a real coordinator and store: who may dial, waiting for the exporter,
the offer reaching the exporter's Listen stream, lease end; leases of vanished exporters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jumpstarter.controller.auth import TokenAuthority
from jumpstarter.controller.coordinator import Coordinator
from jumpstarter.controller.dial import Dialer
from jumpstarter.controller.model import Kind, LeasePhase
from jumpstarter.controller.routers import AttachedRouter, RouterRegistry
from jumpstarter.controller.store.sqlite import SqliteStore
from jumpstarter.controller.stream_tokens import StreamTokenVerifier
from jumpstarter.errors import ConnectionLostError, ExporterNotReadyError, LeaseEndedError, PermissionDeniedError
from jumpstarter.exporter.status import ExporterStatus
from tests.unit.controller.clock import Clock

pytestmark = pytest.mark.anyio
NS = "default"
S = ExporterStatus



class Lab:
    """A coordinator with one exporter online, a client with a granted lease, and a dialer."""

    def __init__(self, tmp_path: Path) -> None:
        store = SqliteStore.in_directory(tmp_path)
        self.clock = Clock()
        self.coordinator = Coordinator(store, self.clock, offline_grace=30.0)
        self.authority = TokenAuthority(store)
        self.registry = RouterRegistry("controller:8082", lambda: store.list_leases(active_only=True))
        self.coordinator.lease_listeners.append(self.registry.lease_changed)
        self.dialer = Dialer(self.coordinator, self.authority, self.registry)
        self.alice = self.coordinator.create_identity(Kind.CLIENT, NS, "alice", {})
        self.bob = self.coordinator.create_identity(Kind.CLIENT, NS, "bob", {})
        self.coordinator.create_identity(Kind.EXPORTER, NS, "board", {"site": "lab"})
        self.status = self.coordinator.status_stream(NS, "board")

    async def lease(self) -> str:
        await self.status.__anext__()  # type: ignore[attr-defined]
        self.coordinator.report_status(NS, "board", S.AVAILABLE, "")
        lease = self.coordinator.create_lease(self.alice, "site=lab", 600)
        assert lease.phase is LeasePhase.READY
        return lease.name


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    made = Lab(tmp_path)
    yield made
    await made.status.aclose()  # type: ignore[attr-defined]


async def listening(lab: Lab, name: str) -> tuple[asyncio.Task[Any], asyncio.Queue[Any]]:
    offers: asyncio.Queue[Any] = asyncio.Queue()

    async def listen() -> None:
        async for offer in lab.dialer.listen(NS, "board", name):
            offers.put_nowait(offer)
        offers.put_nowait(None)

    task = asyncio.ensure_future(listen())
    await asyncio.sleep(0)
    return task, offers


async def test_dial_waits_for_the_exporter_then_offers_the_same_token_to_both(lab: Lab) -> None:
    name = await lab.lease()
    lab.coordinator.report_status(NS, "board", S.BEFORE_LEASE_HOOK, "running beforeLease hook")
    listener, offers = await listening(lab, name)
    dialing = asyncio.ensure_future(lab.dialer.dial(lab.alice, NS, name, 10.0))
    await asyncio.sleep(0.05)
    assert not dialing.done()  # still in beforeLease
    lab.coordinator.report_status(NS, "board", S.LEASE_READY, "ready")
    offer = await asyncio.wait_for(dialing, 2)
    assert offer == await asyncio.wait_for(offers.get(), 2)
    assert offer.router_endpoint == "controller:8082"  # the built-in router: no other is attached
    grant = StreamTokenVerifier(lab.authority.verification_keys()).verify(offer.router_token)
    assert grant.lease == f"{NS}/{name}"

    lab.coordinator.release_lease(lab.alice, NS, name)
    assert await asyncio.wait_for(offers.get(), 2) is None  # the Listen stream ends with the lease
    await listener
    with pytest.raises(LeaseEndedError, match="has ended"):
        await lab.dialer.dial(lab.alice, NS, name, 1.0)


async def test_only_the_owner_may_dial(lab: Lab) -> None:
    name = await lab.lease()
    with pytest.raises(PermissionDeniedError):
        await lab.dialer.dial(lab.bob, NS, name, 1.0)


async def test_dial_gives_up_in_time_and_names_the_problem(lab: Lab) -> None:
    name = await lab.lease()
    lab.coordinator.report_status(NS, "board", S.LEASE_READY, "ready")
    with pytest.raises(ExporterNotReadyError, match="not listening"):
        await lab.dialer.dial(lab.alice, NS, name, 1.0)  # no Listen stream for the lease
    lab.coordinator.report_status(NS, "board", S.BEFORE_LEASE_HOOK_FAILED, "hook exploded")
    with pytest.raises(LeaseEndedError, match="hook exploded"):  # no point in waiting: it ended the lease
        await lab.dialer.dial(lab.alice, NS, name, 10.0)


async def test_attached_routers_are_preferred_when_their_labels_fit(lab: Lab) -> None:
    name = await lab.lease()
    lab.coordinator.report_status(NS, "board", S.LEASE_READY, "ready")
    listener, _ = await listening(lab, name)
    router = AttachedRouter("r1", "router-lab:8083", {"site": "lab"})
    events = lab.registry.attach(router, {})
    snapshot = await asyncio.wait_for(events.__anext__(), 2)
    assert snapshot.snapshot and list(snapshot.active_leases) == [f"{NS}/{name}"]
    assert (await lab.dialer.dial(lab.alice, NS, name, 5.0)).router_endpoint == "router-lab:8083"
    lab.coordinator.release_lease(lab.alice, NS, name)
    assert list((await asyncio.wait_for(events.__anext__(), 2)).ended_leases) == [f"{NS}/{name}"]
    await events.aclose()
    assert lab.registry.attached == []
    await listener


async def test_a_lease_ends_when_its_exporter_stays_offline(lab: Lab) -> None:
    name = await lab.lease()
    await lab.status.aclose()  # type: ignore[attr-defined]  # the exporter's connection drops
    lab.clock.now += 29
    lab.coordinator._reschedule()
    assert lab.coordinator.get_lease(None, NS, name).phase is LeasePhase.READY  # may still come back
    with pytest.raises(ConnectionLostError, match="offline"):
        await lab.dialer.dial(lab.alice, NS, name, 0.6)
    lab.clock.now += 1
    lab.coordinator._reschedule()
    ended = lab.coordinator.get_lease(None, NS, name)
    assert (ended.phase, ended.reason, ended.message) == (LeasePhase.ENDED, "Released", "exporter board went offline")
    lab.status = lab.coordinator.status_stream(NS, "board")  # (for the fixture's cleanup)
