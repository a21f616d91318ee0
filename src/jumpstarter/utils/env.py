"""`env()`: the client tree of the exporter the surrounding `jmp shell` (or hook) points at."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from jumpstarter.errors import EnvironmentVariableNotSetError

HOST_ENV = "JUMPSTARTER_HOST"


@dataclass(slots=True)
class ExporterMetadata:
    """What the shell knows about its exporter."""

    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    lease: str | None = None


def _host() -> str:
    host = os.environ.get(HOST_ENV)
    if not host:
        raise EnvironmentVariableNotSetError(
            f"{HOST_ENV} is not set: run this inside `jmp shell` (or an exporter hook), "
            "e.g. `jmp shell --exporter NAME -- pytest`"
        )
    return host


def _allow() -> tuple[list[str], bool]:
    allow = [a.strip() for a in os.environ.get("JMP_DRIVERS_ALLOW", "").split(",") if a.strip()]
    return allow, "UNSAFE" in allow or os.environ.get("JMP_DRIVERS_UNSAFE", "") in ("1", "true")


def metadata() -> ExporterMetadata:
    """Name, labels and lease of the shell's exporter (from the environment)."""
    labels = dict(
        item.split("=", 1) for item in os.environ.get("JMP_EXPORTER_LABELS", "").split(",") if "=" in item
    )
    return ExporterMetadata(
        name=os.environ.get("JMP_EXPORTER", ""), labels=labels, lease=os.environ.get("JMP_LEASE") or None
    )


@contextmanager
def env() -> Iterator[Any]:
    """Yield the root client of the exporter at `$JUMPSTARTER_HOST` (sync use)."""
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.client import client_from_path, client_from_target
    from jumpstarter.client.direct import target_from_env

    host = _host()
    allow, unsafe = _allow()
    with start_blocking_portal("asyncio") as portal:
        if host.startswith(("/", ".", "unix:")):
            manager = client_from_path(host, portal, allow=allow, unsafe=unsafe)
        else:
            manager = client_from_target(target_from_env(host), portal, allow=allow, unsafe=unsafe, interactive=False)
        with manager as client:
            yield client


@contextmanager
def env_with_metadata() -> Iterator[tuple[Any, ExporterMetadata]]:
    """`env()` plus the exporter's name, labels and lease."""
    with env() as client:
        yield client, metadata()


@asynccontextmanager
async def env_async() -> AsyncIterator[Any]:
    """Yield the root client for async code (use the *_async methods); unix-socket exporters."""
    from jumpstarter.client.client import client_from_path_async

    host = _host()
    allow, unsafe = _allow()
    async with client_from_path_async(host, allow=allow, unsafe=unsafe) as client:
        yield client
