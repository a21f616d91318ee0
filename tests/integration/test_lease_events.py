"""Lease changes are pushed to clients: `jmp shell` hears of a lease's end at once, warns before it
expires, and a client facing a controller without the watch service (upstream's) falls back to
polling. Real controller processes, real exporters; the fallback runs our client servicer alone
on a loopback port, as an upstream controller would serve it."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from jumpstarter.config.client import ClientConfig
from tests.integration.conftest import Cli, assert_clean_failure, wait_until
from tests.integration.test_controller import controller, create_clients, exporter, exporters
from tests.integration.test_router import client_config, shell


def test_shell_warns_before_expiry_says_expired_and_stops_the_command(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice")
        env = dict(cli.env, JMP_LEASE_WARN_BEFORE="soon")
        refused = cli.jmp("shell", "--client", "alice", "-l", "board=rpi", "--", "true", env=env)
        assert_clean_failure(refused, "JMP_LEASE_WARN_BEFORE: invalid duration 'soon'")
        assert refused.returncode == 2
        with exporter(cli, "rpi1", "board=rpi"):
            cli.env["JMP_LEASE_WARN_BEFORE"] = "1s"
            args = ["--client", "alice", "-l", "board=rpi", "--duration", "2s", "--",
                    "sh", "-c", "touch started && sleep 60"]
            with shell(cli, "alice", *args) as running:
                code, _ = running.finished(timeout=20)
            stderr = running.log.read_text()
    assert (cli.tmp / "started").exists(), stderr
    assert code == 9, stderr
    name = re.search(r"lease (\S+) requested", stderr)
    assert name, stderr
    lines = stderr.splitlines()
    warned = lines.index(f"lease {name.group(1)} expires in 1s")
    expired = lines.index(f"lease {name.group(1)} expired")
    assert warned < expired < lines.index(f"Error: lease {name.group(1)} ended: expired"), stderr
    assert "Traceback" not in stderr


async def _watch(config: ClientConfig, lease: str, seen: asyncio.Queue[tuple[str, float]]) -> None:
    from jumpstarter.client.lease import ControllerSession
    from jumpstarter.client.lease_watch import watch_lease

    session = ControllerSession(config)
    try:
        await watch_lease(session, lease, lambda why: seen.put_nowait((why, time.time())))
    finally:
        await session.close()


async def _release_and_expiry_latency(config: ClientConfig) -> tuple[float, float]:
    """Seconds from a release (the call returning) and from a lease's end time to its watcher hearing."""
    from jumpstarter.client.lease import ControllerSession, wait_ready

    session = ControllerSession(config)
    try:
        latencies = []
        for duration, release in ((600.0, True), (1.0, False)):
            created = await session.create_lease("board=rpi", duration)
            name = created.name.rsplit("/", 1)[-1]
            ready = await wait_ready(session, name, lambda _: None, 20)
            seen: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
            watcher = asyncio.ensure_future(_watch(config, name, seen))
            await asyncio.sleep(0.3)  # the watch stream is open (its first event arrives at once)
            if release:
                await session.release_lease(name)
                since = time.time()
            else:
                assert ready.expires is not None
                since = ready.expires
            why, when = await asyncio.wait_for(seen.get(), 10)
            await watcher
            assert why == ("released (released by the client)" if release else "expired")
            latencies.append(when - since)  # the next lease waits for the exporter's afterLease
        return latencies[0], latencies[1]
    finally:
        await session.close()


def test_release_and_expiry_are_pushed_to_the_watcher_at_once(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from jumpstarter.client import lease_watch

    # were the changes polled rather than pushed, the watcher would hear only after a minute
    monkeypatch.setattr(lease_watch, "WATCH_POLL", 60.0)
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi"):
            wait_until(lambda: exporters(cli, "alice")["rpi1"]["status"] == "Available", what="exporter available")
            released, expired = asyncio.run(_release_and_expiry_latency(client_config(cli, "alice")))
    print(f"lease ended -> watcher told: release {released * 1000:.1f} ms, expiry {expired * 1000:.1f} ms")
    assert released < 2.0  # generous: this box is shared; bench figures are in the docs
    assert -0.05 < expired < 2.0


@asynccontextmanager
async def _upstream_like_controller(tmp: Path) -> AsyncIterator[tuple[ClientConfig, object]]:
    """Our client.v1 ClientService alone (no LeaseWatchService, like upstream's controller) on a
    loopback port, with a client `alice` and an offline exporter `rpi1` (leases stay Pending)."""
    import grpc

    from jumpstarter.config.common import ObjectMeta, TLSConfig
    from jumpstarter.controller.auth import TokenAuthority
    from jumpstarter.controller.coordinator import Coordinator
    from jumpstarter.controller.model import Kind
    from jumpstarter.controller.service import Authenticator, ClientServicer
    from jumpstarter.controller.store.sqlite import SqliteStore
    from jumpstarter.direct.tls import generate_self_signed
    from jumpstarter.protocol.client.v1 import client_pb2_grpc

    store = SqliteStore.in_directory(tmp)
    authority = TokenAuthority(store)
    coordinator = Coordinator(store)
    alice = coordinator.create_identity(Kind.CLIENT, "default", "alice", {})
    coordinator.create_identity(Kind.EXPORTER, "default", "rpi1", {"board": "rpi"})
    identity = generate_self_signed(["localhost"])
    server = grpc.aio.server()
    client_pb2_grpc.add_ClientServiceServicer_to_server(ClientServicer(coordinator, Authenticator(authority)), server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(identity.key_pem, identity.cert_pem)]))
    await server.start()
    try:
        token, _ = authority.issue(alice)
        yield ClientConfig(metadata=ObjectMeta(name="alice", namespace="default"), endpoint=f"localhost:{port}",
                           tls=TLSConfig(ca=identity.cert_pem.decode()), token=token), coordinator
    finally:
        await server.stop(None)
        store.close()


def test_a_controller_without_the_watch_service_is_polled(tmp_path: Path) -> None:
    from jumpstarter.client import lease_watch
    from jumpstarter.client.lease import ControllerSession

    async def scenario() -> float:
        async with _upstream_like_controller(tmp_path) as (config, _):
            session = ControllerSession(config)
            try:
                created = await session.create_lease("board=rpi", 600)
                name = created.name.rsplit("/", 1)[-1]
                seen: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
                watcher = asyncio.ensure_future(_watch(config, name, seen))
                await asyncio.sleep(0.3)
                await session.release_lease(name)
                since = time.time()
                why, when = await asyncio.wait_for(seen.get(), 10)
                await watcher
                assert why == "released (released by the client)"
                return when - since
            finally:
                await session.close()

    latency = asyncio.run(scenario())
    assert latency <= lease_watch.WATCH_POLL + 0.5  # found by polling GetLease


@pytest.mark.parametrize("text", ["5m", "0"])
def test_warning_threshold_from_the_environment(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from jumpstarter.cli.lease_shell import warn_before

    monkeypatch.setenv("JMP_LEASE_WARN_BEFORE", text)
    assert warn_before(ClientConfig()) == (300.0 if text == "5m" else None)
    monkeypatch.delenv("JMP_LEASE_WARN_BEFORE")
    config = ClientConfig.model_validate({"leases": {"warn_before": 90}})
    assert warn_before(config) == 90.0
