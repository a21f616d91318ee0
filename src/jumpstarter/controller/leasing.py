"""Lease scheduling as pure functions: who may lease what, who waits where, what expires.

The coordinator feeds these functions snapshots and applies what they return; nothing here does
I/O or reads the clock, so every rule is tested with tables.

Queueing: waiting leases are served first-come first-served, with one fairness rule: leases are
ordered by (how many earlier waiting leases the same client has, creation order), so a client that
queues ten leases cannot starve a client that queues one. Among several free exporters a lease takes
the one that the fewest other waiting leases could use, so a pinned or narrow request is not
blocked by a broad one that could have gone elsewhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as replaced
from datetime import timedelta
from functools import lru_cache

from jumpstarter.controller.durations import format_duration
from jumpstarter.controller.model import Identity, Lease, LeasePhase, Policy
from jumpstarter.controller.selectors import Selector, parse_selector
from jumpstarter.exporter.status import ExporterStatus


@lru_cache(maxsize=4096)
def selector(text: str) -> Selector:
    """Parsed selector, cached (selectors repeat a lot across scheduling passes)."""
    return parse_selector(text)


@dataclass(slots=True, frozen=True)
class ExporterView:
    """An exporter as the scheduler sees it."""

    namespace: str
    name: str
    labels: dict[str, str]
    online: bool = False
    status: ExporterStatus = ExporterStatus.OFFLINE
    enabled: bool = True
    leased_by: str | None = None  # name of the lease holding it
    draining: bool = False  # a lease just ended; not free until it reports AVAILABLE again

    @property
    def free(self) -> bool:
        """Whether a lease could be handed to it right now."""
        return (
            self.online and self.enabled and not self.draining and self.leased_by is None
            and self.status is ExporterStatus.AVAILABLE
        )


@dataclass(slots=True)
class Plan:
    """What a scheduling pass decided."""

    assignments: list[tuple[Lease, ExporterView]] = field(default_factory=list)
    #: lease key -> 1-based position among the leases waiting for the same exporters
    positions: dict[tuple[str, str], int] = field(default_factory=dict)
    #: lease key -> why nothing can ever satisfy it
    unsatisfiable: dict[tuple[str, str], str] = field(default_factory=dict)


def _admitting(policies: Iterable[Policy], client: Identity, exporter: ExporterView) -> list[Policy] | None:
    """Policies selecting `exporter` that admit `client` (ignoring durations); None when no policy
    selects the exporter at all (then everyone of its namespace may lease it)."""
    applying = [
        p for p in policies
        if p.namespace == exporter.namespace and selector(p.exporter_selector).matches(exporter.labels)
    ]
    if not applying:
        return None
    return [
        p for p in applying
        if client.name in p.clients or (
            p.client_selector is not None and selector(p.client_selector).matches(client.labels)
        )
    ]


def admission(policies: Iterable[Policy], client: Identity, exporter: ExporterView, duration: float) -> int | None:
    """The priority with which `client` may lease `exporter` for `duration` seconds, or None when
    it may not.

    Clients never reach exporters of another namespace. Within a namespace with no policy that
    selects the exporter, everyone may (priority 0); otherwise some selecting policy must admit the
    client (by name or label) with a maximum duration of at least `duration`; the highest priority
    of those counts."""
    if client.namespace != exporter.namespace:
        return None
    admitting = _admitting(policies, client, exporter)
    if admitting is None:
        return 0
    fitting = [p.priority for p in admitting if p.maximum_duration is None or duration <= p.maximum_duration]
    return max(fitting, default=None)


def policy_allows(
    policies: Iterable[Policy], client: Identity, exporter: ExporterView, duration: float
) -> bool:
    """Whether `client` may lease `exporter` for `duration` seconds (see `admission`)."""
    return admission(policies, client, exporter, duration) is not None


def access_denial(
    policies: Sequence[Policy], client: Identity, exporters: Sequence[ExporterView], duration: float
) -> str:
    """Why `client` may lease none of `exporters` (which match its request) for `duration` seconds."""
    longest: float = 0.0
    for e in exporters:
        admitting = _admitting(policies, client, e) if e.namespace == client.namespace else []
        for p in admitting or ():
            longest = max(longest, float("inf") if p.maximum_duration is None else p.maximum_duration)
    if 0 < longest < float("inf"):
        allowed = format_duration(timedelta(seconds=longest))
        asked = format_duration(timedelta(seconds=duration))
        return f"no access for that long: an access policy limits these leases to {allowed} (asked for {asked})"
    return f"no access: no access policy admits client {client.name!r} to the matching exporters"


#: (namespace, selector, pinned exporter name) -> positions in `exporters` of those matching it
Matched = dict[tuple[str, str, str | None], list[int]]


def candidates(
    lease: Lease, exporters: Sequence[ExporterView], policies: Sequence[Policy], client: Identity | None,
    matched: Matched | None = None,
) -> list[ExporterView]:
    """Exporters that could ever serve `lease` (ignoring whether they are free now).

    `matched` remembers selector matches across calls whose `exporters` list the same exporters,
    with the same labels, in the same order (leases waiting at once mostly share a few selectors:
    matching each against every exporter was most of the controller's time with 1,000 exporters)."""
    key = (lease.namespace, lease.selector, lease.exporter_name)
    positions = matched.get(key) if matched is not None else None
    if positions is None:
        wanted = selector(lease.selector)
        positions = [
            i for i, e in enumerate(exporters)
            if e.namespace == lease.namespace
            and (lease.exporter_name is None or e.name == lease.exporter_name)
            and wanted.matches(e.labels)
        ]
        if matched is not None:
            matched[key] = positions
    pool = [exporters[i] for i in positions]
    if client is None or client.namespace != lease.namespace:
        return []
    if not any(p.namespace == lease.namespace for p in policies):
        return list(pool)  # no policy selects any of them: everyone of the namespace may
    return [e for e in pool if policy_allows(policies, client, e, lease.duration)]


def validate(lease: Lease) -> str | None:
    """Why a lease request is invalid (phase Invalid), or None."""
    if lease.duration <= 0:
        return "the duration must be longer than zero"
    if not lease.selector.strip() and not lease.exporter_name:
        return "give a label selector or an exporter name"
    try:
        parsed = selector(lease.selector)
    except ValueError as exc:
        return str(exc)
    if parsed.contradictory():
        return f"selector {lease.selector!r} contradicts itself: no exporter can ever match it"
    return None


def policy_problem(policy: Policy) -> str | None:
    """What is wrong with an access policy, or None."""
    if not policy.name or "/" in policy.name or ":" in policy.name:
        return f"invalid name {policy.name!r}"
    for what, text in (("exporter selector", policy.exporter_selector), ("client selector", policy.client_selector)):
        try:
            parsed = selector(text or "")
        except ValueError as exc:
            return f"{what}: {exc}"
        if parsed.contradictory():
            return f"{what} {text!r} contradicts itself: it can never match"
    bad = [c for c in policy.clients if not c or "/" in c or ":" in c]
    if bad:
        return f"invalid client name {bad[0]!r} (give names of clients of namespace {policy.namespace})"
    if policy.maximum_duration is not None and not 0 < policy.maximum_duration < float("inf"):
        return "the maximum duration must be longer than zero"
    return None


def unsatisfiable_reason(
    lease: Lease, found: Sequence[ExporterView], known: Sequence[ExporterView],
    policies: Sequence[Policy] = (), client: Identity | None = None,
) -> str | None:
    """Why nothing can ever satisfy `lease`, given its candidates among all known exporters (and
    the policies and client the candidates were chosen with, to explain a denial)."""
    if found:
        enabled = [e for e in found if e.enabled]
        return None if enabled else "every matching exporter is disabled"
    if lease.exporter_name is not None:
        pinned = [e for e in known if e.namespace == lease.namespace and e.name == lease.exporter_name]
        if not pinned:
            return f"no exporter named {lease.exporter_name!r}"
        if not selector(lease.selector).matches(pinned[0].labels):
            return f"exporter {lease.exporter_name!r} does not match selector {lease.selector!r}"
        if client is not None:
            return access_denial(policies, client, pinned, lease.duration)
        return f"no access to exporter {lease.exporter_name!r}"
    matching = [e for e in known if e.namespace == lease.namespace and selector(lease.selector).matches(e.labels)]
    if matching:
        if client is not None:
            return access_denial(policies, client, matching, lease.duration)
        return "no access to any exporter matching the selector"
    return f"no exporter matches selector {lease.selector!r}"


def hold_refusal(
    lease: Lease, owner: Identity, exporters: Sequence[ExporterView], policies: Sequence[Policy]
) -> str | None:
    """Why client `owner` may not hold `lease` as it is (after a change of owner or duration), or
    None: the owner must be of the lease's namespace and allowed by the access policies to hold its
    exporter for its duration (a pending lease: one of the exporters that could serve it)."""
    if owner.namespace != lease.namespace:
        return f"client {owner.namespace}/{owner.name} is not in namespace {lease.namespace}"
    if lease.phase is LeasePhase.READY and lease.exporter:
        held = [e for e in exporters if (e.namespace, e.name) == (lease.namespace, lease.exporter)]
        if held and not policy_allows(policies, owner, held[0], lease.duration):
            return f"client {owner.name!r} may not hold exporter {lease.exporter!r}: " + access_denial(
                policies, owner, held, lease.duration
            )
        return None
    moved = replaced(lease, client=owner.name)
    reason = unsatisfiable_reason(moved, candidates(moved, exporters, policies, owner), exporters, policies, owner)
    return None if reason is None else f"client {owner.name!r} could never get this lease: {reason}"


def fair_order(pending: Iterable[Lease]) -> list[Lease]:
    """Waiting leases in service order: FIFO, interleaved across clients."""
    by_age = sorted(pending, key=lambda lease: (lease.created, lease.seq))
    rank: Counter[str] = Counter()
    keyed = []
    for lease in by_age:
        keyed.append((rank[lease.client], lease.created, lease.seq, lease))
        rank[lease.client] += 1
    return [item[3] for item in sorted(keyed, key=lambda item: item[:3])]


def schedule(
    now: float,
    pending: Sequence[Lease],
    exporters: Sequence[ExporterView],
    policies: Sequence[Policy],
    clients: dict[tuple[str, str], Identity],
    matched: Matched | None = None,
) -> Plan:
    """Assign free exporters to waiting leases that have reached their begin time (`matched`:
    selector matches kept from earlier passes over the same exporters, see `candidates`)."""
    plan = Plan()
    due = [
        lease for lease in fair_order(pending)
        if lease.phase is LeasePhase.PENDING and (lease.begin_time is None or lease.begin_time <= now)
    ]
    options: dict[tuple[str, str], list[ExporterView]] = {}
    matched = {} if matched is None else matched
    for lease in due:
        client = clients.get((lease.namespace, lease.client))
        found = candidates(lease, exporters, policies, client, matched)
        reason = unsatisfiable_reason(lease, found, exporters, policies, client)
        if reason is not None:
            plan.unsatisfiable[lease.key] = reason
            continue
        options[lease.key] = found
    demand: Counter[tuple[str, str]] = Counter(
        (e.namespace, e.name) for found in options.values() for e in found
    )
    taken: set[tuple[str, str]] = set()
    waiting: list[Lease] = []
    for lease in due:
        if lease.key not in options:
            continue
        free = [e for e in options[lease.key] if e.free and (e.namespace, e.name) not in taken]
        if not free:
            waiting.append(lease)
            continue
        client = clients[(lease.namespace, lease.client)]  # known: it has candidates
        chosen = min(free, key=lambda e: (
            -(admission(policies, client, e, lease.duration) or 0), demand[(e.namespace, e.name)], e.name
        ))
        taken.add((chosen.namespace, chosen.name))
        plan.assignments.append((lease, chosen))
    wanted = {lease.key: {(e.namespace, e.name) for e in options[lease.key]} for lease in waiting}
    for i, lease in enumerate(waiting):
        ahead = sum(1 for other in waiting[:i] if wanted[other.key] & wanted[lease.key])
        plan.positions[lease.key] = ahead + 1
    return plan


def expired(now: float, leases: Iterable[Lease]) -> list[Lease]:
    """Ready leases whose end time has passed."""
    return [
        lease for lease in leases
        if lease.phase is LeasePhase.READY and lease.effective_end is not None and lease.effective_end <= now
    ]


def abandoned(
    now: float, leases: Iterable[Lease], offline_since: Callable[[tuple[str, str]], float | None], grace: float
) -> list[Lease]:
    """Ready leases whose exporter has been offline (`offline_since((namespace, exporter))`) for
    `grace` seconds or more."""
    found = []
    for lease in leases:
        if lease.phase is LeasePhase.READY and lease.exporter:
            since = offline_since((lease.namespace, lease.exporter))
            if since is not None and now - since >= grace:
                found.append(lease)
    return found


def abandon_deadline(
    leases: Iterable[Lease], offline_since: Callable[[tuple[str, str]], float | None], grace: float
) -> float | None:
    """When the first Ready lease with an offline exporter would be given up."""
    times = []
    for lease in leases:
        if lease.phase is LeasePhase.READY and lease.exporter:
            since = offline_since((lease.namespace, lease.exporter))
            if since is not None:
                times.append(since + grace)
    return min(times, default=None)


def next_deadline(leases: Iterable[Lease]) -> float | None:
    """The earliest moment something changes on its own (an expiry or a scheduled begin)."""
    times = []
    for lease in leases:
        if lease.phase is LeasePhase.READY and lease.effective_end is not None:
            times.append(lease.effective_end)
        elif lease.phase is LeasePhase.PENDING and lease.begin_time is not None:
            times.append(lease.begin_time)
    return min(times, default=None)
