"""Distributed mode for the pytest plugin: lease a device through a controller.

`lease()` is the one function the plugin (and `JumpstarterTest`) call to get a device by client
config + label selector. It requests a lease from the client config's controller, waits until it
is ready, and serves it on a private unix socket through the router, exactly as `jmp shell -l`
does; everything after it (connecting, log capture, JUnit properties, `env()` inside tests) is
shared with the other modes. The lease is released when the block exits, also on test failures,
errors and Ctrl-C. Each pytest-xdist worker calls `lease()` on its own and so holds a device of
its own; when fewer devices match than there are workers, it fails at once saying so instead of
queueing behind its sibling workers until the acquisition timeout.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from jumpstarter.errors import ArgumentError, ConfigurationError, JumpstarterError

log = logging.getLogger("jumpstarter.testing.leasing")


class NotEnoughDevicesError(JumpstarterError):
    """More pytest-xdist workers want a device than devices match the selector."""


@dataclass(frozen=True, slots=True)
class Worker:
    """Which pytest-xdist worker asks (id "" and count 1 without xdist)."""

    id: str = ""
    count: int = 1


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """What the plugin asks the controller for."""

    client: str | None  # client config alias; None: the current client config
    selector: str  # label selector, "k=v,k2!=v2"
    duration: str = "30m"
    worker: Worker = field(default_factory=Worker)


@dataclass(frozen=True, slots=True)
class Lease:
    """A ready lease, served on a local unix socket for the lifetime of the `lease()` block."""

    name: str
    exporter_name: str
    exporter_labels: dict[str, str]
    socket_path: str
    allow: list[str]  # driver client allow-list of the client config (`drivers.allow`)
    unsafe: bool  # the client config's `drivers.unsafe`


def current_client_alias() -> str:
    """The client config alias to use when none is named: the current one, else `default`."""
    from jumpstarter.config.store import current_client

    return current_client() or "default"


def _seconds(duration: str) -> float:
    from jumpstarter.controller.durations import parse_duration

    try:
        return parse_duration(duration).total_seconds()
    except ValueError as exc:
        raise ArgumentError(f"lease duration {duration!r}: {exc}") from None


@contextmanager
def lease(request: LeaseRequest) -> Iterator[Lease]:
    """Acquire a lease for `request`, yield it while the block runs, release it afterwards."""
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.lease import ControllerSession, LeaseTunnel, serve_lease, wait_ready
    from jumpstarter.client.signals import terminate_as_interrupt
    from jumpstarter.config.client import ClientConfig

    alias = request.client or current_client_alias()
    config = ClientConfig.load(alias)  # a missing config says so, naming the file
    if not config.endpoint:
        raise ConfigurationError(f"client config {alias!r} has no controller endpoint; "
                                 f"create it with `jmp admin create client --save` or `jmp login`")
    duration = _seconds(request.duration)
    with (
        terminate_as_interrupt(),  # a cancelled CI job (SIGTERM) stops the run like Ctrl-C: released
        start_blocking_portal("asyncio") as portal,
        tempfile.TemporaryDirectory(prefix="jmp-pytest-") as tmp,
    ):
        session = portal.call(ControllerSession, config)
        name = ""
        try:
            if request.worker.count > 1:
                portal.call(_check_enough_devices, session, request)
            created = portal.call(session.create_lease, request.selector, duration)
            name = created.name.rsplit("/", 1)[-1]
            log.info("lease %s requested (%s) for %s", name, request.selector or "any exporter",
                     request.worker.id or "this session")
            ready = portal.call(wait_ready, session, name, log.info, float(config.leases.acquisition_timeout))
            labels = portal.call(session.exporter_labels, ready.exporter)
            socket_path = os.path.join(tmp, "lease.sock")
            tunnel = LeaseTunnel(session, name, float(config.leases.dial_timeout))
            with portal.wrap_async_context_manager(serve_lease(tunnel, socket_path)):
                yield Lease(name, ready.exporter, labels, socket_path, list(config.drivers.allow),
                            bool(config.drivers.unsafe))
        finally:
            # also on KeyboardInterrupt: the portal's loop still runs, so the release goes out
            if name:
                try:
                    portal.call(session.release_lease, name)
                except Exception as exc:  # an ended lease cannot be released: nothing left to do
                    log.warning("releasing lease %s failed: %s", name, exc)
            portal.call(session.close)


async def _check_enough_devices(session: object, request: LeaseRequest) -> None:
    """Fail when fewer exporters match than xdist workers want one each."""
    from jumpstarter.client.lease import ControllerSession
    from jumpstarter.protocol.client.v1 import client_pb2

    assert isinstance(session, ControllerSession)
    listing = client_pb2.ListExportersRequest(parent=f"namespaces/{session.namespace}", filter=request.selector)
    found = await session.call(session.clients().ListExporters, listing)
    matching = len(found.exporters)
    if matching < request.worker.count:
        raise NotEnoughDevicesError(
            f"pytest-xdist runs {request.worker.count} workers and each needs a device of its own, but only "
            f"{matching} exporter{'s' if matching != 1 else ''} match{'es' if matching == 1 else ''} "
            f"{request.selector or 'the (empty) selector'}; run with -n {max(matching, 1)} or fewer"
            + (" (or without -n)" if matching <= 1 else "")
        )
