"""Pure rules of lease management: policy priorities and denial messages, policy validation, who
may hold a changed or transferred lease."""

from __future__ import annotations

import pytest

from jumpstarter.controller.leasing import (
    ExporterView,
    access_denial,
    admission,
    hold_refusal,
    policy_problem,
    schedule,
)
from jumpstarter.controller.model import Identity, Kind, Lease, LeasePhase, Policy
from jumpstarter.exporter.status import ExporterStatus

NS = "default"
ALICE = Identity(Kind.CLIENT, NS, "alice", labels={"team": "qa"})
BOB = Identity(Kind.CLIENT, NS, "bob")
OUTSIDER = Identity(Kind.CLIENT, "elsewhere", "alice", labels={"team": "qa"})
CLIENTS = {c.key: c for c in (ALICE, BOB)}


def exporter(name: str, namespace: str = NS, free: bool = True, **labels: str) -> ExporterView:
    return ExporterView(namespace, name, labels, online=True,
                        status=ExporterStatus.AVAILABLE if free else ExporterStatus.LEASE_READY)


RPI = exporter("e1", board="rpi")


@pytest.mark.parametrize(
    ("policies", "client", "duration", "expected"),
    [
        ([], ALICE, 60, 0),  # no policy: open to the namespace
        ([], OUTSIDER, 60, None),  # never across namespaces
        ([Policy(NS, "p", "", clients=("alice",))], OUTSIDER, 60, None),  # same name, other namespace
        ([Policy(NS, "p", "board=rpi", client_selector="team=qa")], OUTSIDER, 60, None),
        ([Policy(NS, "p", "board=rpi", clients=("alice",), priority=5)], ALICE, 60, 5),
        ([Policy(NS, "a", "board=rpi", clients=("alice",), priority=1),
          Policy(NS, "b", "board=rpi", client_selector="team=qa", priority=7)], ALICE, 60, 7),
        ([Policy(NS, "a", "board=rpi", clients=("alice",), priority=1),
          Policy(NS, "b", "board=rpi", client_selector="team=qa", priority=7, maximum_duration=30)], ALICE, 60, 1),
        ([Policy(NS, "p", "board=rpi", clients=("alice",), maximum_duration=30)], ALICE, 60, None),
        ([Policy(NS, "p", "board=rpi")], ALICE, 60, None),  # admits nobody: closed
        ([Policy(NS, "p", "board=x86")], ALICE, 60, 0),  # selects other exporters
    ],
)
def test_admission(policies: list[Policy], client: Identity, duration: float, expected: int | None) -> None:
    assert admission(policies, client, RPI, duration) == expected


def test_higher_priority_exporters_go_first() -> None:
    lease = Lease(NS, "l", "alice", "", duration=60, created=0, seq=1)
    low, high = exporter("a-low", tier="low"), exporter("z-high", tier="high")
    policies = [Policy(NS, "low", "tier=low", clients=("alice",), priority=1),
                Policy(NS, "high", "tier=high", clients=("alice",), priority=9)]
    plan = schedule(0, [lease], [low, high], policies, CLIENTS)
    assert [e.name for _, e in plan.assignments] == ["z-high"]
    plan = schedule(0, [lease], [low, high], [], CLIENTS)  # no policies: by name
    assert [e.name for _, e in plan.assignments] == ["a-low"]


@pytest.mark.parametrize(
    ("policies", "duration", "needle"),
    [
        ([Policy(NS, "p", "board=rpi", clients=("bob",))], 60, "no access policy admits client 'alice'"),
        ([Policy(NS, "p", "board=rpi", clients=("alice",), maximum_duration=1800)], 3600,
         "limits these leases to 30m (asked for 1h)"),
    ],
)
def test_access_denial_explains(policies: list[Policy], duration: float, needle: str) -> None:
    assert needle in access_denial(policies, ALICE, [RPI], duration)


def test_unsatisfiable_lease_says_why() -> None:
    lease = Lease(NS, "l", "alice", "board=rpi", duration=3600, created=0, seq=1)
    policies = [Policy(NS, "p", "board=rpi", clients=("alice",), maximum_duration=600)]
    plan = schedule(0, [lease], [RPI], policies, CLIENTS)
    assert "no access for that long" in plan.unsatisfiable[lease.key]


@pytest.mark.parametrize(
    ("policy", "needle"),
    [
        (Policy(NS, "ok", "board=rpi", clients=("alice",), maximum_duration=60), None),
        (Policy(NS, "ok", ""), None),
        (Policy(NS, "", "board=rpi"), "invalid name"),
        (Policy(NS, "a/b", "board=rpi"), "invalid name"),
        (Policy(NS, "p", "board in (rpi"), "exporter selector: invalid selector"),
        (Policy(NS, "p", "board=rpi", client_selector="team in ("), "client selector: invalid selector"),
        (Policy(NS, "p", "a=1,a=2"), "contradicts itself"),
        (Policy(NS, "p", "", clients=("ns/alice",)), "invalid client name 'ns/alice'"),
        (Policy(NS, "p", "", maximum_duration=0), "longer than zero"),
    ],
)
def test_policy_problem(policy: Policy, needle: str | None) -> None:
    found = policy_problem(policy)
    assert (found is None) if needle is None else (needle in (found or ""))


def test_selector_error_points_at_the_bad_token() -> None:
    found = policy_problem(Policy(NS, "p", "board in (rpi"))
    assert found is not None and "at the end" in found and "^" in found


READY = Lease(NS, "l", "alice", "board=rpi", duration=3600, created=0, seq=1, phase=LeasePhase.READY,
              exporter="e1", effective_begin=0, effective_end=3600)
PENDING = Lease(NS, "l", "alice", "board=rpi", duration=3600, created=0, seq=1)


@pytest.mark.parametrize(
    ("lease", "owner", "policies", "needle"),
    [
        (READY, BOB, [], None),
        (PENDING, BOB, [], None),
        (READY, OUTSIDER, [], "not in namespace default"),
        (READY, BOB, [Policy(NS, "p", "board=rpi", clients=("alice",))], "may not hold exporter 'e1'"),
        (PENDING, BOB, [Policy(NS, "p", "board=rpi", clients=("alice",))], "could never get this lease"),
        (READY, ALICE, [Policy(NS, "p", "board=rpi", clients=("alice",), maximum_duration=600)],
         "limits these leases to 10m"),
        (READY, BOB, [Policy(NS, "p", "board=rpi", clients=("alice", "bob"))], None),
    ],
)
def test_hold_refusal(lease: Lease, owner: Identity, policies: list[Policy], needle: str | None) -> None:
    found = hold_refusal(lease, owner, [RPI], policies)
    assert (found is None) if needle is None else (needle in (found or ""))
