"""Scheduling as a pure function: FIFO with fairness, pinning, policies, begin times, expiry."""

from __future__ import annotations

import pytest

from jumpstarter.controller.leasing import (
    ExporterView,
    abandon_deadline,
    abandoned,
    expired,
    fair_order,
    next_deadline,
    policy_allows,
    schedule,
    validate,
)
from jumpstarter.controller.model import Identity, Kind, Lease, LeasePhase, Policy
from jumpstarter.exporter.status import ExporterStatus

NS = "default"


def exporter(name: str, free: bool = True, **labels: str) -> ExporterView:
    return ExporterView(NS, name, labels, online=True,
                        status=ExporterStatus.AVAILABLE if free else ExporterStatus.LEASE_READY)


def lease(name: str, client: str = "alice", selector: str = "board=rpi", created: float = 0.0,
          **kw: object) -> Lease:
    return Lease(NS, name, client, selector, duration=60.0, created=created, seq=int(created), **kw)  # type: ignore[arg-type]


CLIENTS = {(NS, c): Identity(Kind.CLIENT, NS, c) for c in ("alice", "bob", "carol")}


def plan_of(pending: list[Lease], exporters: list[ExporterView], policies: list[Policy] | None = None,
            now: float = 100.0) -> dict[str, str]:
    plan = schedule(now, pending, exporters, policies or [], CLIENTS)
    return {lease.name: e.name for lease, e in plan.assignments}


def test_first_come_first_served() -> None:
    pending = [lease("late", client="bob", created=2), lease("early", created=1)]
    assert plan_of(pending, [exporter("e1", board="rpi")]) == {"early": "e1"}


def test_waiting_positions_count_only_competitors() -> None:
    pending = [lease("a", created=1), lease("b", client="bob", created=2),
               lease("x", client="carol", selector="board=x86", created=3)]
    plan = schedule(100.0, pending, [exporter("e1", free=False, board="rpi"), exporter("e2", free=False, board="x86")],
                    [], CLIENTS)
    assert plan.assignments == []
    assert plan.positions == {(NS, "a"): 1, (NS, "b"): 2, (NS, "x"): 1}


def test_fairness_interleaves_clients() -> None:
    pending = [lease(f"alice{i}", created=i) for i in range(3)] + [lease("bob0", client="bob", created=10)]
    assert [lease.name for lease in fair_order(pending)] == ["alice0", "bob0", "alice1", "alice2"]
    exporters = [exporter("e1", board="rpi"), exporter("e2", board="rpi")]
    assert set(plan_of(pending, exporters)) == {"alice0", "bob0"}


def test_pinned_exporter() -> None:
    pending = [lease("pin", selector="", exporter_name="e2", created=1)]
    assert plan_of(pending, [exporter("e1", board="rpi"), exporter("e2", board="rpi")]) == {"pin": "e2"}


def test_broad_request_leaves_the_narrow_one_its_exporter() -> None:
    pending = [lease("broad", selector="board", created=1),
               lease("narrow", client="bob", selector="board=rpi,cam", created=2)]
    exporters = [exporter("e1", board="rpi", cam="yes"), exporter("e2", board="rpi")]
    assert plan_of(pending, exporters) == {"broad": "e2", "narrow": "e1"}


@pytest.mark.parametrize(
    ("view", "assigned"),
    [
        (ExporterView(NS, "e", {"board": "rpi"}, online=False, status=ExporterStatus.AVAILABLE), False),
        (ExporterView(NS, "e", {"board": "rpi"}, online=True, status=ExporterStatus.AFTER_LEASE_HOOK), False),
        (ExporterView(NS, "e", {"board": "rpi"}, online=True, status=ExporterStatus.AVAILABLE, leased_by="x"), False),
        (ExporterView(NS, "e", {"board": "rpi"}, online=True, status=ExporterStatus.AVAILABLE, draining=True), False),
        (ExporterView(NS, "e", {"board": "rpi"}, online=True, status=ExporterStatus.AVAILABLE), True),
        (ExporterView("other", "e", {"board": "rpi"}, online=True, status=ExporterStatus.AVAILABLE), False),
    ],
)
def test_only_free_exporters_are_assigned(view: ExporterView, assigned: bool) -> None:
    assert bool(plan_of([lease("l")], [view])) is assigned


def test_unsatisfiable_and_begin_time() -> None:
    pending = [lease("nothing", selector="board=vax"), lease("pin", selector="", exporter_name="ghost"),
               lease("later", begin_time=200.0)]
    plan = schedule(100.0, pending, [exporter("e1", board="rpi")], [], CLIENTS)
    assert set(plan.unsatisfiable) == {(NS, "nothing"), (NS, "pin")}
    assert "no exporter named 'ghost'" in plan.unsatisfiable[(NS, "pin")]
    assert plan.assignments == []  # `later` is not due yet
    assert plan_of(pending[2:], [exporter("e1", board="rpi")], now=200.0) == {"later": "e1"}


@pytest.mark.parametrize(
    ("policies", "client", "duration", "allowed"),
    [
        ([], "alice", 60, True),
        ([Policy(NS, "p", "board=rpi", clients=("bob",))], "alice", 60, False),
        ([Policy(NS, "p", "board=rpi", clients=("alice",))], "alice", 60, True),
        ([Policy(NS, "p", "board=rpi", client_selector="team=qa")], "carol", 60, True),
        ([Policy(NS, "p", "board=rpi", clients=("alice",), maximum_duration=30)], "alice", 60, False),
        ([Policy(NS, "p", "board=x86", clients=("bob",))], "alice", 60, True),  # policy selects other exporters
        ([Policy("other", "p", "", clients=("alice",))], "alice", 60, True),
    ],
)
def test_policies(policies: list[Policy], client: str, duration: float, allowed: bool) -> None:
    identity = Identity(Kind.CLIENT, NS, client, labels={"team": "qa"} if client == "carol" else {})
    assert policy_allows(policies, identity, exporter("e1", board="rpi"), duration) is allowed


def test_other_namespace_is_denied() -> None:
    outsider = Identity(Kind.CLIENT, "elsewhere", "mallory")
    assert not policy_allows([], outsider, exporter("e1", board="rpi"), 60)


def test_expiry_and_deadlines() -> None:
    ready = lease("r", phase=LeasePhase.READY, exporter="e1", effective_begin=0.0, effective_end=60.0)
    waiting = lease("w", begin_time=30.0)
    assert expired(59.9, [ready, waiting]) == []
    assert expired(60.0, [ready, waiting]) == [ready]
    assert next_deadline([ready, waiting]) == 30.0


@pytest.mark.parametrize(
    ("kw", "problem"),
    [({"selector": ""}, "selector or an exporter name"), ({"selector": "a=1,a=2"}, "contradicts"),
     ({"selector": "a in"}, "invalid selector"), ({"selector": "a=1"}, None),
     ({"selector": "", "exporter_name": "e"}, None)],
)
def test_validate(kw: dict[str, object], problem: str | None) -> None:
    found = validate(lease("l", **kw))  # type: ignore[arg-type]
    assert (found is None) if problem is None else (problem in (found or ""))


def test_abandoned_leases_and_their_deadline() -> None:
    ready = Lease("ns", "l1", "alice", "a=1", 60, created=0, phase=LeasePhase.READY, exporter="e1")
    other = Lease("ns", "l2", "bob", "a=1", 60, created=0, phase=LeasePhase.READY, exporter="e2")
    waiting = Lease("ns", "l3", "carol", "a=1", 60, created=0)
    offline = {("ns", "e1"): 100.0}.get  # e2 online (None), e1 offline since t=100
    leases = [ready, other, waiting]
    assert abandoned(129.0, leases, offline, 30.0) == []
    assert abandoned(130.0, leases, offline, 30.0) == [ready]
    assert abandon_deadline(leases, offline, 30.0) == 130.0
    assert abandon_deadline(leases, lambda key: None, 30.0) is None
