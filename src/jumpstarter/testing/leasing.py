"""Distributed mode for the pytest plugin: lease a device through a controller.

This is the seam to the controller. `lease()` is the one function the plugin (and
`JumpstarterTest`) call to get a device by client config + label selector; everything after it
(connecting, log capture, JUnit properties, `env()` inside tests) is shared with the other modes,
because a lease is handed over as a unix socket path, like `jmp shell` hands one to its child
(`JUMPSTARTER_HOST`).

The plugin cannot reach a controller in this version, so `lease()` checks what it can (the client
config exists) and then raises `ControllerUnavailableError`. To implement it: create the lease for
`request.selector` with `request.duration` through the client config's controller, wait until it
is ready, serve it on a private unix socket (the client side of leases does this for `jmp shell`)
and yield a `Lease`; release it when the block exits, also on errors and Ctrl-C. Each
pytest-xdist worker calls `lease()` on its own (`request.worker`); when fewer devices match than
there are workers, fail with a message saying so rather than queueing forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from jumpstarter.errors import JumpstarterError


class ControllerUnavailableError(JumpstarterError):
    """Distributed mode was asked for, but this version has no controller client."""


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


class Lease(Protocol):
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


@contextmanager
def lease(request: LeaseRequest) -> Iterator[Lease]:
    """Acquire a lease for `request`, yield it while the block runs, release it afterwards."""
    from jumpstarter.config.client import ClientConfig

    alias = request.client or current_client_alias()
    config = ClientConfig.load(alias)  # a missing config says so, naming the file
    raise ControllerUnavailableError(
        f"distributed mode needs a controller: not available in this version (client {alias!r}, "
        f"endpoint {config.endpoint or '(none)'}, selector {request.selector or '(any)'}); use a local exporter "
        "config (--jmp-exporter-config FILE), a direct-mode exporter (--jmp-direct HOST:PORT), "
        "or run pytest inside `jmp shell`"
    )
    yield  # type: ignore[unreachable]  # pragma: no cover - the controller's implementation yields here
