"""The exporter status machine: the transition table, versions, and what the wire reports."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from anyio.streams.stapled import StapledObjectStream

from jumpstarter.client import client_from_path_async
from jumpstarter.common.utils import serve
from jumpstarter.driver import Driver, export, exportstream
from jumpstarter.errors import ExporterNotReadyError
from jumpstarter.exporter.server import serve_unix
from jumpstarter.exporter.session import Session
from jumpstarter.exporter.status import (
    CALLABLE,
    TRANSITIONS,
    ExporterStatus,
    InvalidTransition,
    StatusMachine,
)
from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb

S = ExporterStatus
DEADLINE = 10

ALLOWED = [
    (S.UNSPECIFIED, S.AVAILABLE),
    (S.UNSPECIFIED, S.OFFLINE),
    (S.OFFLINE, S.AVAILABLE),
    (S.AVAILABLE, S.BEFORE_LEASE_HOOK),
    (S.AVAILABLE, S.LEASE_READY),
    (S.AVAILABLE, S.OFFLINE),
    (S.BEFORE_LEASE_HOOK, S.LEASE_READY),
    (S.BEFORE_LEASE_HOOK, S.BEFORE_LEASE_HOOK_FAILED),
    (S.BEFORE_LEASE_HOOK, S.OFFLINE),
    (S.LEASE_READY, S.AFTER_LEASE_HOOK),
    (S.LEASE_READY, S.AVAILABLE),
    (S.LEASE_READY, S.OFFLINE),
    (S.AFTER_LEASE_HOOK, S.AVAILABLE),
    (S.AFTER_LEASE_HOOK, S.AFTER_LEASE_HOOK_FAILED),
    (S.AFTER_LEASE_HOOK, S.OFFLINE),
    (S.BEFORE_LEASE_HOOK_FAILED, S.AFTER_LEASE_HOOK),
    (S.BEFORE_LEASE_HOOK_FAILED, S.AVAILABLE),
    (S.BEFORE_LEASE_HOOK_FAILED, S.OFFLINE),
    (S.AFTER_LEASE_HOOK_FAILED, S.AVAILABLE),
    (S.AFTER_LEASE_HOOK_FAILED, S.OFFLINE),
]
FORBIDDEN = [(old, new) for old, new in itertools.product(S, S) if old != new and (old, new) not in ALLOWED]


def pair_id(pair: tuple[ExporterStatus, ExporterStatus]) -> str:
    return f"{pair[0].name}->{pair[1].name}"


def machine_at(status: ExporterStatus) -> StatusMachine:
    return StatusMachine(status=status)


def test_table_is_what_this_test_lists() -> None:
    """The expected table above is written out by hand; the code's table must match it."""
    assert {(old, new) for old, targets in TRANSITIONS.items() for new in targets} == set(ALLOWED)
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize("pair", ALLOWED, ids=pair_id)
def test_allowed_transition(pair: tuple[ExporterStatus, ExporterStatus]) -> None:
    old, new = pair
    machine = machine_at(old)
    machine.transition(new, "why")
    assert (machine.status, machine.previous, machine.message, machine.version) == (new, old, "why", 1)


@pytest.mark.parametrize("pair", FORBIDDEN, ids=pair_id)
def test_forbidden_transition(pair: tuple[ExporterStatus, ExporterStatus]) -> None:
    old, new = pair
    machine = machine_at(old)
    with pytest.raises(InvalidTransition, match=f"from {old.name} to {new.name}"):
        machine.transition(new, "no")
    assert (machine.status, machine.previous, machine.message, machine.version) == (old, None, "", 0)


@pytest.mark.parametrize("status", list(S), ids=lambda s: s.name)
def test_same_status_updates_message_and_version_only(status: ExporterStatus) -> None:
    machine = machine_at(status)
    machine.transition(status, "still here")
    assert (machine.status, machine.previous, machine.message, machine.version) == (
        status,
        None,
        "still here",
        1,
    )


def test_every_status_can_go_offline() -> None:
    assert all(S.OFFLINE in TRANSITIONS[s] for s in S if s is not S.OFFLINE)


def test_version_counts_every_change() -> None:
    machine = StatusMachine()
    path = [S.BEFORE_LEASE_HOOK, S.LEASE_READY, S.LEASE_READY, S.AFTER_LEASE_HOOK, S.AVAILABLE]
    for version, status in enumerate(path, start=1):
        machine.transition(status)
        assert machine.version == version
    assert machine.previous is S.AFTER_LEASE_HOOK


def test_callable_states() -> None:
    """Clients drive the device in a ready lease, and never when no lease or a failed hook says no."""
    assert S.LEASE_READY in CALLABLE
    refused = {S.UNSPECIFIED, S.OFFLINE, S.AVAILABLE, S.BEFORE_LEASE_HOOK_FAILED, S.AFTER_LEASE_HOOK_FAILED}
    assert not CALLABLE & refused


@pytest.mark.anyio
async def test_wait_for_wakes_on_transition() -> None:
    machine = StatusMachine()
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            results: list[ExporterStatus] = []

            async def waiter() -> None:
                results.append(await machine.wait_for(S.LEASE_READY))

            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            machine.transition(S.BEFORE_LEASE_HOOK)
            machine.transition(S.LEASE_READY)
    assert results == [S.LEASE_READY]


@pytest.mark.anyio
async def test_wait_for_returns_at_once_when_already_there() -> None:
    with anyio.fail_after(DEADLINE):
        assert await StatusMachine().wait_for(S.AVAILABLE) is S.AVAILABLE


# ---- through the wire ------------------------------------------------------------------


@dataclass(kw_only=True)
class Lamp(Driver):
    """One method of each call style."""

    @export
    def on(self) -> str:
        return "on"

    @export
    def count(self) -> Iterator[int]:
        yield 1

    @exportstream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        send, receive = anyio.create_memory_object_stream[bytes](1)
        async with send, receive:
            yield StapledObjectStream(send, receive)


def test_get_status_of_a_local_session() -> None:
    with serve(Lamp()) as client:
        response = client.connection.exporter_stub().GetStatus(pb.GetStatusRequest())
    assert response.status == S.LEASE_READY
    assert response.previous_status == S.AVAILABLE
    assert response.status_version == 1
    assert response.message == "local session"


@asynccontextmanager
async def served(session: Session) -> AsyncIterator[Any]:
    """Serve an existing session (so the test can move its status) and connect to it."""
    with tempfile.TemporaryDirectory(prefix="jmp-") as tmp:
        path = os.path.join(tmp, "exporter.sock")
        async with serve_unix(session, path), client_from_path_async(path) as client:
            yield client


#: A lease's life, as the exporter walks it.
LEASE_PATH = [
    S.BEFORE_LEASE_HOOK,
    S.BEFORE_LEASE_HOOK_FAILED,
    S.AFTER_LEASE_HOOK,
    S.AVAILABLE,
    S.BEFORE_LEASE_HOOK,
    S.LEASE_READY,
    S.AFTER_LEASE_HOOK,
    S.AFTER_LEASE_HOOK_FAILED,
    S.AVAILABLE,
]


@pytest.mark.anyio
async def test_driver_calls_follow_the_status() -> None:
    """Every call style is served exactly in the CALLABLE statuses; GetStatus reports each move."""
    session = Session(Lamp())
    async with served(session) as client:
        export, _ = client.connection.aio_stubs()
        with pytest.raises(ExporterNotReadyError, match="AVAILABLE"):
            await client.call_async("on")
        previous = session.status.status
        for version, status in enumerate(LEASE_PATH, start=1):
            session.status.transition(status, f"step {version}")
            response = await export.GetStatus(pb.GetStatusRequest())
            assert (response.status, response.previous_status) == (status, previous)
            assert (response.message, response.status_version) == (f"step {version}", version)
            previous = status
            if status in CALLABLE:
                assert await client.call_async("on") == "on"
                continue
            with pytest.raises(ExporterNotReadyError, match=status.name):
                await client.call_async("on")
            with pytest.raises(ExporterNotReadyError, match=status.name):
                [item async for item in client.streamingcall_async("count")]
            with pytest.raises(ExporterNotReadyError, match=status.name):
                async with client.stream_async():
                    pass
