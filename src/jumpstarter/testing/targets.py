"""Open the target a pytest session drives: the shell's exporter, an exporter config served
in-process, a direct-mode exporter, or a leased device. Each yields the same `Connected`."""

from __future__ import annotations

import getpass
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from jumpstarter.errors import ExporterNotReadyError
from jumpstarter.testing.leasing import LeaseRequest, Worker
from jumpstarter.testing.settings import DirectSpec, LeaseSpec, LocalSpec, ShellSpec, TargetSpec

#: Lease name hooks see in local mode (as in `jmp shell --exporter-config`).
LOCAL_LEASE_NAME = "local"
#: Loggers of an in-process exporter whose INFO records clients should see (as `jmp shell` sets them).
EXPORTER_LOGGERS = ("jumpstarter.hooks", "jumpstarter.exporter")


@dataclass(slots=True)
class Connected:
    """An open target: the root client and what is known about the exporter."""

    client: Any
    mode: str  # shell, local, direct or distributed
    exporter: str
    labels: dict[str, str] = field(default_factory=dict)
    lease: str | None = None
    #: Environment that lets `env()` and `j` inside the tests reach the same exporter.
    env: dict[str, str] = field(default_factory=dict)


def _labels_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


@contextmanager
def open_target(spec: TargetSpec, worker: Worker | None = None) -> Iterator[Connected]:
    """Connect to `spec` for the duration of the block (serving or leasing it first if needed)."""
    if isinstance(spec, ShellSpec):
        manager = _shell(spec)
    elif isinstance(spec, LocalSpec):
        manager = _local(spec)
    elif isinstance(spec, DirectSpec):
        manager = _direct(spec)
    else:
        manager = _leased(spec, worker or Worker())
    with manager as connected:
        yield connected


@contextmanager
def _shell(spec: ShellSpec) -> Iterator[Connected]:
    from jumpstarter.utils.env import env, metadata

    meta = metadata()
    with env() as client:
        yield Connected(client, "shell", meta.name or spec.host, dict(meta.labels), meta.lease)


@contextmanager
def _local(spec: LocalSpec) -> Iterator[Connected]:
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.client import client_from_path
    from jumpstarter.exporter.loader import load_exporter

    built = load_exporter(spec.config)
    name = spec.config.stem  # as `jmp shell --exporter-config` names it
    with ExitStack() as stack:
        for logger_name in EXPORTER_LOGGERS:  # hook output and hook results reach the client's log stream
            logger = logging.getLogger(logger_name)
            if logger.getEffectiveLevel() > logging.INFO:
                stack.callback(logger.setLevel, logger.level)
                logger.setLevel(logging.INFO)
        portal = stack.enter_context(start_blocking_portal("asyncio"))
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="jmp-pytest-"))
        socket_path = os.path.join(tmp, "exporter.sock")
        stack.enter_context(portal.wrap_async_context_manager(built.serving(socket_path)))
        if not portal.call(built.begin_lease, LOCAL_LEASE_NAME, _user(), spec.run_hooks):
            message = built.session.status.message
            portal.call(built.end_lease, spec.run_hooks)
            raise ExporterNotReadyError(f"exporter {name}: {message}")
        stack.callback(portal.call, built.end_lease, spec.run_hooks)
        client = stack.enter_context(client_from_path(socket_path, portal, unsafe=True))
        labels = dict(built.labels)
        env = {
            "JUMPSTARTER_HOST": socket_path,
            "JMP_DRIVERS_ALLOW": "UNSAFE",
            "JMP_EXPORTER": name,
            "JMP_EXPORTER_LABELS": _labels_text(labels),
        }
        yield Connected(client, "local", name, labels, None, env)


@contextmanager
def _direct(spec: DirectSpec) -> Iterator[Connected]:
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.client import client_from_target
    from jumpstarter.client.direct import DirectTarget

    target = DirectTarget(
        address=spec.address,
        passphrase=spec.passphrase,
        insecure=spec.insecure,
        ca_file=str(spec.tls_ca) if spec.tls_ca else None,
        accept_fingerprint=spec.accept_fingerprint,
    )
    with start_blocking_portal("asyncio") as portal:
        with client_from_target(target, portal, unsafe=True, interactive=False) as client:
            labels = _exporter_labels(client)
            name = labels.get("jumpstarter.dev/name", spec.address)
            env = {**target.environment(name), "JMP_EXPORTER_LABELS": _labels_text(labels)}
            yield Connected(client, "direct", name, labels, None, env)


@contextmanager
def _leased(spec: LeaseSpec, worker: Worker) -> Iterator[Connected]:
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.client import client_from_path
    from jumpstarter.testing.leasing import lease

    request = LeaseRequest(spec.client, spec.selector, spec.duration, worker)
    with lease(request) as held, start_blocking_portal("asyncio") as portal:
        allow, unsafe = list(held.allow), bool(held.unsafe)
        with client_from_path(held.socket_path, portal, allow=allow, unsafe=unsafe) as client:
            labels = dict(held.exporter_labels)
            env = {
                "JUMPSTARTER_HOST": held.socket_path,
                "JMP_DRIVERS_ALLOW": "UNSAFE" if unsafe else ",".join(allow),
                "JMP_EXPORTER": held.exporter_name,
                "JMP_EXPORTER_LABELS": _labels_text(labels),
                "JMP_LEASE": held.name,
            }
            yield Connected(client, "distributed", held.exporter_name, labels, held.name, env)


def _exporter_labels(client: Any) -> dict[str, str]:
    """The exporter's own labels (its GetReport answer; the client tree keeps only the drivers')."""
    from google.protobuf import empty_pb2

    connection = client.connection
    report = connection.exporter_stub().GetReport(empty_pb2.Empty(), metadata=connection.metadata(()), timeout=10)
    return dict(report.labels)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
