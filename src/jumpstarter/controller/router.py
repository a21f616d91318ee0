"""The router: `RouterService.Stream` pairs a client's stream and an exporter's stream that present
the same stream token, then relays their frames both ways, verbatim, until both sides are done.

Frames are relayed as the serialized messages they arrived as (`StreamRequest` and `StreamResponse`
have the same wire layout), so the router never parses payloads: DATA, PING, GOAWAY and RST_STREAM
frames reach the other side exactly as sent. Back-pressure: each direction is one loop that reads a
frame from the sender's call and writes it to the receiver's call, reading the next one only once
that write completed; gRPC holds at most one outgoing message per call, so the router buffers at
most one frame per direction (a queue of one), stops reading from a sender whose receiver is slow,
and HTTP/2 flow control pushes back on the sender. (A deeper asyncio.Queue per direction costs a
task switch per frame: ~10 % of throughput and ~40 us per routed call when measured.)

A token pairs once: the first caller waits (up to `PAIRING_TIMEOUT`) for the second; after that the
stream id is spent. Every stream is filed under its lease, and `close_lease` ends all of them at
once when the lease ends. A side whose caller vanishes takes its peer down with it.

The router runs inside the controller (same server and port) and as its own process
(`jmp controller router`, see `router_process`); only the `LeaseGate` differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from jumpstarter.controller.auth import bearer
from jumpstarter.controller.stream_tokens import StreamTokenVerifier
from jumpstarter.errors import UnauthenticatedError

log = logging.getLogger("jumpstarter.router")

SERVICE = "jumpstarter.v1.RouterService"
#: How long the first side of a stream waits for the second.
PAIRING_TIMEOUT = 30.0


class LeaseGate(Protocol):
    """Knows which leases are active."""

    async def refusal(self, lease: str) -> str | None:
        """Why streams of lease `namespace/name` may not pair now, or None when they may."""
        ...


@dataclass(eq=False, slots=True)
class _Side:
    """One caller of Stream: its call, the task serving it, and whether it has sent everything."""

    lease: str
    task: asyncio.Task[Any]
    context: grpc.aio.ServicerContext
    sent_all: asyncio.Event = field(default_factory=asyncio.Event)
    peer: _Side | None = None
    stopped: tuple[grpc.StatusCode, str] | None = None
    finished: bool = False

    def stop(self, code: grpc.StatusCode, message: str) -> None:
        """End this side's call with `code` (from any task)."""
        if self.stopped is None and not self.finished:
            self.stopped = (code, message)
            self.task.cancel()


@dataclass(slots=True)
class _Waiting:
    side: _Side
    paired: asyncio.Future[_Side]


class Router:
    """Pairs streams by token and relays frames between them."""

    def __init__(
        self, verifier: StreamTokenVerifier, gate: LeaseGate, pairing_timeout: float = PAIRING_TIMEOUT
    ) -> None:
        self.verifier = verifier
        self.gate = gate
        self.pairing_timeout = pairing_timeout
        self._waiting: dict[str, _Waiting] = {}
        self._spent: dict[str, float] = {}  # stream id -> token expiry (forgotten after it)
        self._by_lease: dict[str, set[_Side]] = {}
        self.pairs_total = 0
        #: Also told when a lease's streams must end (the data port's connections)
        self.lease_closers: list[Callable[[str, str], None]] = []

    @property
    def active_sides(self) -> int:
        """How many callers are connected (waiting or relaying)."""
        return sum(len(sides) for sides in self._by_lease.values())

    def leases(self) -> set[str]:
        """Leases that have streams here."""
        return set(self._by_lease)

    def generic_handler(self) -> grpc.GenericRpcHandler:
        """`RouterService.Stream` taking and giving raw serialized frames."""
        handler = grpc.stream_stream_rpc_method_handler(self.stream)  # no (de)serializers: bytes
        return grpc.method_handlers_generic_handler(SERVICE, {"Stream": handler})

    def close_lease(self, lease: str, reason: str) -> None:
        """End every stream of lease `namespace/name` now."""
        sides = self._by_lease.pop(lease, set())
        if sides:
            log.info("closing %d routed stream(s) of lease %s: %s", len(sides), lease, reason)
        for side in sides:
            side.stop(grpc.StatusCode.ABORTED, f"lease {lease} ended: {reason}")
        for closer in self.lease_closers:
            closer(lease, reason)

    def _forget_spent(self) -> None:
        now = time.time()
        if len(self._spent) > 256:
            self._spent = {sid: exp for sid, exp in self._spent.items() if exp > now}

    def is_spent(self, stream_id: str) -> bool:
        """Whether a stream id has paired (or given up waiting) here, by Stream or the data port."""
        self._forget_spent()
        return stream_id in self._spent

    def spend(self, stream_id: str, expiry: float) -> None:
        """Refuse `stream_id` from now on (until its token expires)."""
        self._spent[stream_id] = expiry

    async def stream(self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        """The Stream RPC: authenticate, pair, relay."""
        try:
            grant = self.verifier.verify(bearer(context.invocation_metadata()))
        except UnauthenticatedError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            return
        refusal = await self.gate.refusal(grant.lease)
        if refusal is not None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"stream token refused: {refusal}")
            return
        if self.is_spent(grant.stream_id):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "stream token already used: dial again")
            return
        task = asyncio.current_task()
        assert task is not None
        side = _Side(grant.lease, task, context)
        self._by_lease.setdefault(grant.lease, set()).add(side)
        try:
            peer = await self._pair(grant.stream_id, grant.expiry, side)
            if peer is None:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the other side of the stream never connected")
                return
            await self._relay(side, peer, request_iterator)
            side.finished = True
        except grpc.aio.AbortError:
            raise
        except asyncio.CancelledError:
            if side.stopped is None:  # our caller went away: its peer cannot go on alone
                if side.peer is not None:
                    side.peer.stop(grpc.StatusCode.UNAVAILABLE, "the other side of the routed stream went away")
                raise
            code, message = side.stopped
            with contextlib.suppress(Exception):
                await context.abort(code, message)
        except Exception as exc:  # e.g. writing to a peer whose call has just ended
            log.debug("routed stream of lease %s failed: %r", grant.lease, exc)
            if side.peer is not None:
                side.peer.stop(grpc.StatusCode.UNAVAILABLE, "the other side of the routed stream failed")
            with contextlib.suppress(Exception):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the other side of the routed stream went away")
        finally:
            sides = self._by_lease.get(grant.lease)
            if sides is not None:
                sides.discard(side)
                if not sides:
                    del self._by_lease[grant.lease]

    async def _pair(self, stream_id: str, expiry: float, side: _Side) -> _Side | None:
        """The other side of `stream_id` (waiting for it if we are first); None on timeout."""
        waiting = self._waiting.pop(stream_id, None)
        if waiting is not None:
            self._spent[stream_id] = expiry
            side.peer = waiting.side
            waiting.paired.set_result(side)
            self.pairs_total += 1
            return waiting.side
        mine = _Waiting(side, asyncio.get_running_loop().create_future())
        self._waiting[stream_id] = mine
        try:
            async with asyncio.timeout(self.pairing_timeout):
                side.peer = await asyncio.shield(mine.paired)
            return side.peer
        except TimeoutError:
            return None
        finally:
            if self._waiting.get(stream_id) is mine:
                del self._waiting[stream_id]
                self._spent[stream_id] = expiry  # abandoned: a late peer must not wait in vain

    @staticmethod
    async def _relay(side: _Side, peer: _Side, request_iterator: AsyncIterator[bytes]) -> None:
        """Write what our caller sends to the peer's call, one frame at a time; our call ends once
        the peer has sent everything too (its relay writes to our call until then)."""
        write = peer.context.write
        async for frame in request_iterator:
            await write(frame)
        side.sent_all.set()
        await peer.sent_all.wait()


class CoordinatorGate:
    """Lease state straight from the controller's coordinator (the in-process router)."""

    def __init__(self, coordinator: Any) -> None:
        self.coordinator = coordinator

    async def refusal(self, lease: str) -> str | None:
        """None while the lease is Ready."""
        from jumpstarter.controller.model import LeasePhase

        namespace, _, name = lease.partition("/")
        found = self.coordinator.store.get_lease(namespace, name)
        if found is None:
            return f"lease {lease} does not exist"
        if found.phase is not LeasePhase.READY:
            return f"lease {lease} has ended ({found.reason or found.phase.value})"
        return None
