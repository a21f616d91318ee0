"""Lease changes are pushed to clients: `jmp shell` hears of a lease's end at once, warns before it
expires, and a client facing a controller without the watch service (upstream's) falls back to
polling. Real controller processes, real exporters; the fallback runs our client servicer alone
on a loopback port, as an upstream controller would serve it."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from jumpstarter.config.client import ClientConfig
from tests.integration.conftest import JMP, Cli, assert_clean_failure, wait_until
from tests.integration.test_controller import controller, create_clients, exporter, exporters
from tests.integration.test_router import client_config, shell

if TYPE_CHECKING:
    from jumpstarter.controller.coordinator import Coordinator


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
async def _upstream_like_controller(tmp: Path) -> AsyncIterator[tuple[ClientConfig, Coordinator]]:
    """Our client.v1 ClientService alone (no LeaseWatchService, like upstream's controller) on a
    loopback port, with a client `alice` and an offline exporter `rpi1` (leases stay Pending)."""
    import grpc

    from jumpstarter.config.common import ObjectMeta, TLSConfig
    from jumpstarter.controller.auth import TokenAuthority
    from jumpstarter.controller.client_service import ClientServicer
    from jumpstarter.controller.coordinator import Coordinator
    from jumpstarter.controller.model import Kind
    from jumpstarter.controller.service import Authenticator
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


# ---- waiting for a lease: the grant and queue positions are pushed -----------------------------


async def _queue_behind_a_holder(config: ClientConfig) -> dict[str, float]:
    """Holder A, then B and C queued behind it: C's positions and B's grant once A is released,
    then C's grant once B is; seconds from each release (the call returning) to the waiter hearing."""
    from jumpstarter.client.lease import ControllerSession, wait_ready

    session = ControllerSession(config)
    try:
        names = []
        for _ in range(3):
            created = await session.create_lease("board=rpi", 600)
            names.append(created.name.rsplit("/", 1)[-1])
        holder, second, third = names
        said: dict[str, asyncio.Queue[tuple[str, float]]] = {second: asyncio.Queue(), third: asyncio.Queue()}

        async def wait(name: str) -> float:
            await wait_ready(session, name, lambda line: said[name].put_nowait((line, time.time())), 30)
            return time.time()

        second_ready, third_ready = asyncio.ensure_future(wait(second)), asyncio.ensure_future(wait(third))
        assert (await asyncio.wait_for(said[third].get(), 10))[0] == f"lease {third}: waiting, position 2 in queue"
        assert (await asyncio.wait_for(said[second].get(), 10))[0] == f"lease {second}: waiting, position 1 in queue"
        await session.release_lease(holder)
        released = time.time()
        granted = await asyncio.wait_for(second_ready, 30)
        line, moved = await asyncio.wait_for(said[third].get(), 30)
        assert line == f"lease {third}: waiting, position 1 in queue"
        assert not third_ready.done()
        await session.release_lease(second)
        released_again = time.time()
        granted_again = await asyncio.wait_for(third_ready, 30)
        await session.release_lease(third)
        return {"grant": granted - released, "moved": moved - released, "grant_again": granted_again - released_again}
    finally:
        await session.close()


def test_a_queued_lease_hears_of_its_grant_and_new_position_at_once(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jumpstarter.client import lease, lease_watch

    # were the lease polled rather than pushed, a waiter would hear of any change only after a minute
    monkeypatch.setattr(lease, "PENDING_POLL", 60.0)
    monkeypatch.setattr(lease_watch, "WATCH_POLL", 60.0)
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi"):
            wait_until(lambda: exporters(cli, "alice")["rpi1"]["status"] == "Available", what="exporter available")
            took = asyncio.run(_queue_behind_a_holder(client_config(cli, "alice")))
    print("release -> " + ", ".join(f"{key} {value * 1000:.1f} ms" for key, value in took.items()))
    # each includes the exporter's afterLease round trip; polling would have taken 60 s
    assert all(value < 10 for value in took.values()), took


def _queued(log: Path) -> bool:
    return "waiting, position" in log.read_text()


def test_jmp_create_lease_shows_its_queue_position_until_granted(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi"):
            wait_until(lambda: exporters(cli, "alice")["rpi1"]["status"] == "Available", what="exporter available")
            held = cli.jmp("create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "10m", "-o", "name")
            assert held.returncode == 0, held.stderr
            logs = [cli.tmp / "second.log", cli.tmp / "third.log"]
            waiting = []
            for log in logs:
                with log.open("w") as stderr:
                    waiting.append(subprocess.Popen(
                        [JMP, "--log-level", "DEBUG", "create", "lease", "--client", "alice", "-l", "board=rpi",
                         "--duration", "10m", "-o", "name"],
                        env=cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
                    ))
                    wait_until(partial(_queued, log), what=f"{log.stem} queued")
            try:
                assert "position 2 in queue" in logs[1].read_text()
                released = cli.jmp("delete", "leases", held.stdout.strip(), "--client", "alice")
                assert released.returncode == 0, released.stderr
                second, _ = waiting[0].communicate(timeout=20)
                assert waiting[0].returncode == 0, logs[0].read_text()
                wait_until(lambda: "position 1 in queue" in logs[1].read_text(), what="third moved up")
                assert waiting[1].poll() is None
                released = cli.jmp("delete", "leases", second.strip(), "--client", "alice")
                assert released.returncode == 0, released.stderr
                third, _ = waiting[1].communicate(timeout=20)
                assert waiting[1].returncode == 0, logs[1].read_text()
            finally:
                for proc in waiting:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            assert cli.jmp("delete", "leases", third.strip(), "--client", "alice").returncode == 0
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text and "polling lease" not in text, text  # pushed, not polled
    lines = [line.split("waiting, ", 1)[1] for line in logs[1].read_text().splitlines() if "waiting, " in line]
    assert lines == ["position 2 in queue", "position 1 in queue"], logs[1].read_text()


def test_waiting_for_a_lease_polls_a_controller_without_the_watch_service(tmp_path: Path) -> None:
    from jumpstarter.client import lease as client_lease
    from jumpstarter.client.lease import ControllerSession, wait_ready
    from jumpstarter.errors import ArgumentError, ExporterBusyError, LeaseEndedError
    from jumpstarter.exporter.status import ExporterStatus

    async def scenario() -> tuple[float, dict[str, list[str]]]:
        async with _upstream_like_controller(tmp_path) as (config, coordinator):
            # what an exporter's Status stream does: online while this iterates
            presence: Any = coordinator.status_stream("default", "rpi1")
            await anext(presence)
            coordinator.report_status("default", "rpi1", ExporterStatus.AVAILABLE, "")
            session = ControllerSession(config)
            try:
                said: dict[str, list[str]] = {"second": [], "third": []}
                names = []
                for _ in range(3):
                    created = await session.create_lease("board=rpi", 600)
                    names.append(created.name.rsplit("/", 1)[-1])
                holder, second, third = names
                waiter = asyncio.ensure_future(wait_ready(session, second, said["second"].append, 20))
                with pytest.raises(ExporterBusyError, match=f"lease {third} not ready after 0.3s: position 2 in q"):
                    await wait_ready(session, third, said["third"].append, 0.3)
                await session.release_lease(holder)
                coordinator.report_status("default", "rpi1", ExporterStatus.AVAILABLE, "")  # its afterLease is done
                since = time.time()
                ready = await asyncio.wait_for(waiter, 10)
                took = time.time() - since
                assert ready.exporter == "rpi1"
                await session.release_lease(third)
                with pytest.raises(LeaseEndedError, match=f"lease {third} has ended: released"):
                    await wait_ready(session, third, lambda _: None, 5)
                unsatisfiable = await session.create_lease("board=none", 600)
                with pytest.raises(ArgumentError, match="is unsatisfiable: no exporter matches"):
                    await wait_ready(session, unsatisfiable.name.rsplit("/", 1)[-1], lambda _: None, 5)
                return took, {key: [line.replace(name, "NAME") for line in lines]
                              for (key, lines), name in zip(said.items(), (second, third), strict=True)}
            finally:
                await session.close()
                await presence.aclose()

    took, said = asyncio.run(scenario())
    assert took <= client_lease.PENDING_POLL + 1.0  # found by polling GetLease
    assert said == {"second": ["lease NAME: waiting, position 1 in queue"],
                    "third": ["lease NAME: waiting, position 2 in queue"]}


@pytest.mark.slow
def test_a_waiting_client_hears_of_its_grant_across_a_controller_restart(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from jumpstarter.client import lease
    from jumpstarter.client.lease import ControllerSession, ReadyLease, wait_ready
    from tests.integration.test_controller_restart import controller_on, kill

    monkeypatch.setattr(lease, "PENDING_POLL", 60.0)  # a grant heard within the test is a pushed one
    said: list[str] = []
    outcome: list[ReadyLease | BaseException] = []

    def wait(config: ClientConfig, name: str) -> None:
        async def waiting() -> ReadyLease:
            session = ControllerSession(config)
            try:
                return await wait_ready(session, name, said.append, 60)
            finally:
                await session.close()

        try:
            outcome.append(asyncio.run(waiting()))
        except BaseException as exc:
            outcome.append(exc)

    with controller(cli) as first:
        port = first.port
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi"):
            wait_until(lambda: exporters(cli, "alice")["rpi1"]["status"] == "Available", what="exporter available")
            for name in ("held", "waiting"):
                created = cli.jmp("create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "10m",
                                  "--lease-id", name, "--no-wait", "-o", "name")
                assert created.returncode == 0, created.stderr
            waiter = threading.Thread(target=wait, args=(client_config(cli, "alice"), "waiting"), daemon=True)
            waiter.start()
            wait_until(lambda: said, what="the waiter's first event")
            kill(first)
            with controller_on(cli, port):
                wait_until(lambda: exporters(cli, "alice")["rpi1"]["online"], what="exporter reconnected")
                assert not outcome, outcome
                released = cli.jmp("delete", "leases", "held", "--client", "alice")
                assert released.returncode == 0, released.stderr
                waiter.join(30)
    assert said == ["lease waiting: waiting, position 1 in queue"]
    assert len(outcome) == 1 and isinstance(outcome[0], ReadyLease), outcome
    assert outcome[0].exporter == "rpi1"
