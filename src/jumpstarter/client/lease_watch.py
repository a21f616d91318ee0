"""Watching a lease from the client side: hear at once when it is granted, when it ends (and why),
when its exporter goes away or comes back, and shortly before it expires.

The controller pushes every change to the lease (`jumpstarter.admin.v1.LeaseWatchService`, ours);
against a controller without that service (upstream's answers UNIMPLEMENTED) the lease is polled
with GetLease instead (a running lease every `WATCH_POLL` seconds). `lease_updates` is the one
consumer of that stream: `watch_lease` here and `wait_ready` (client/lease.py) both read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from jumpstarter.client.controller import translate
from jumpstarter.client.lease import ControllerSession, ended_message, lease_phase
from jumpstarter.errors import ConnectionLostError

log = logging.getLogger("jumpstarter.client.lease")
#: How often a controller without LeaseWatchService is asked about the lease.
WATCH_POLL = 1.0
#: Reconnection backoff of a lease watch while the controller is away: first wait, cap (seconds).
RECONNECT = (0.2, 2.0)
#: Default of how long before its end a lease's expiry is announced (upstream's Lease.monitor too).
WARN_BEFORE = 300.0


async def watch_lease(
    session: ControllerSession,
    name: str,
    ended: Callable[[str], None],
    notice: Callable[[str], None] | None = None,
    warn_before: float | None = None,
) -> None:
    """Call `ended(why)` once lease `name` has ended (a controller that is away is waited for);
    `notice` hears when its exporter goes offline and comes back meanwhile, and, `warn_before`
    seconds before the lease's end, that it expires soon.

    The controller pushes every change (`LeaseWatchService.WatchLease`); a controller without that
    service (upstream's) is polled with GetLease instead."""
    watch = _LeaseWatch(name, ended, notice, warn_before)
    warner = asyncio.ensure_future(watch.warn())
    try:
        updates = lease_updates(session, name, WATCH_POLL, exporter_online=notice is not None)
        async with contextlib.aclosing(updates):
            async for lease, online in updates:
                if watch.seen(lease, online):
                    return
    finally:
        warner.cancel()
        await asyncio.gather(warner, return_exceptions=True)


async def lease_updates(
    session: ControllerSession, name: str, poll: float, exporter_online: bool = False
) -> AsyncGenerator[tuple[Any, bool | None], None]:
    """Lease `name` (a `client.v1.Lease`) as it is now and after every change, with whether its
    exporter is online (None: unknown), until it has ended; a controller that is away is waited
    for. Pushed by the controller (`LeaseWatchService.WatchLease`); one without that service
    (upstream's) is asked with GetLease every `poll` seconds instead (and, with `exporter_online`,
    GetExporter too). Close it (`contextlib.aclosing`) when leaving early: that ends the stream."""
    try:
        async with contextlib.aclosing(_pushed(session, name)) as pushed:
            async for update in pushed:
                yield update
        return
    except NotImplementedError:
        log.debug("the controller cannot push lease changes; polling lease %s", name)
    async with contextlib.aclosing(_polled(session, name, poll, exporter_online)) as polled:
        async for update in polled:
            yield update


@dataclass(eq=False)
class _LeaseWatch:
    """What a lease watcher has seen so far, and what it has said about it."""

    name: str
    ended: Callable[[str], None]
    notice: Callable[[str], None] | None
    warn_before: float | None
    expires: float | None = None  # seconds since the epoch
    warned_for: float | None = None  # the end time the expiry warning was given for
    offline: bool = False
    _rearm: asyncio.Event = field(default_factory=asyncio.Event)

    def seen(self, lease: Any, online: bool | None) -> bool:
        """Take in the lease as it is now (`online`: its exporter's connection, None: unknown);
        True once it has ended."""
        phase, _ = lease_phase(lease)
        if phase not in ("Ready", "Pending", "Unknown"):
            self.ended(ended_message(lease))
            return True
        if lease.HasField("effective_end_time"):
            expires = lease.effective_end_time.ToNanoseconds() / 1e9
            if expires != self.expires:
                self.expires = expires
                self._rearm.set()
        if self.notice is not None and online is not None and lease.HasField("exporter") and online == self.offline:
            self.offline = not online
            exporter = lease.exporter.rsplit("/", 1)[-1]
            self.notice(f"exporter {exporter} is offline; the lease ends unless it comes back soon"
                        if self.offline else f"exporter {exporter} is back")
        return False

    async def warn(self) -> None:
        """Say `lease NAME expires in 5m` once per end time, `warn_before` seconds before it."""
        if self.notice is None or self.warn_before is None:
            return
        from datetime import timedelta

        from jumpstarter.controller.durations import format_duration

        while True:
            self._rearm.clear()
            delay: float | None = None
            if self.expires is not None and self.warned_for != self.expires:
                delay = self.expires - self.warn_before - time.time()
                if delay <= 0:
                    remaining = self.expires - time.time()
                    self.warned_for = self.expires
                    if remaining > 0:
                        left = format_duration(timedelta(seconds=round(remaining)))
                        self.notice(f"lease {self.name} expires in {left}")
                    continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._rearm.wait()


async def _pushed(session: ControllerSession, name: str) -> AsyncGenerator[tuple[Any, bool | None], None]:
    """The controller's pushed lease events until the lease ends (reconnecting while the
    controller is away); NotImplementedError when the controller has no LeaseWatchService."""
    from jumpstarter.protocol.admin.v1 import leases_pb2, leases_pb2_grpc

    stub = leases_pb2_grpc.LeaseWatchServiceStub(session.channel)
    request = leases_pb2.WatchLeaseRequest(name=session.lease_path(name))
    delay = RECONNECT[0]
    while True:
        call = stub.WatchLease(request, metadata=session.metadata)
        try:
            async for event in call:
                delay = RECONNECT[0]
                yield event.lease, event.exporter_online
            return  # the controller ends the stream once the lease has ended
        except grpc.aio.AioRpcError as exc:
            error = translate(exc, session.endpoint)
            if not isinstance(error, (ConnectionLostError, TimeoutError)):
                raise error from None
            log.debug("lease watch interrupted (%s); again in %.1fs", error, delay)
        finally:
            call.cancel()  # (a no-op once it has ended; ends it when the reader leaves early)
        await asyncio.sleep(delay)  # the controller is away (or restarting): it takes a moment
        delay = min(delay * 2, RECONNECT[1])


async def _polled(
    session: ControllerSession, name: str, poll: float, exporter_online: bool
) -> AsyncGenerator[tuple[Any, bool | None], None]:
    """The lease (and its exporter's connection) every `poll` seconds until it has ended."""
    from jumpstarter.protocol.client.v1 import client_pb2

    while True:
        try:
            lease = await session.get_lease(name)
            online = None
            if exporter_online and lease.HasField("exporter"):
                request = client_pb2.GetExporterRequest(name=lease.exporter)
                online = (await session.call(session.clients().GetExporter, request)).online
        except (ConnectionLostError, TimeoutError):
            await asyncio.sleep(poll)
            continue
        yield lease, online
        if lease_phase(lease)[0] not in ("Ready", "Pending", "Unknown"):
            return
        await asyncio.sleep(poll)
