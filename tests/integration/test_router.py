"""Distributed mode, part 2: clients reach leased exporters through the router, with real processes.

A controller (its built-in router, or a separate `jmp controller router` process), exporters with
different labels, and `jmp shell` clients: the shell leases, waits in the queue, runs `j` through
the router, and reports a lease that ends under it (expiry, exporter killed). Stream tokens are
checked from Python: single use, useless after the lease ends, never for another client's lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from jumpstarter.config.client import ClientConfig
from tests.integration.conftest import JMP, Cli, assert_clean_failure, wait_until
from tests.integration.test_controller import controller, create_clients, exporter, exporters, leases


@dataclass
class Shell:
    """A `jmp shell` running in the background (in `<tmp>`): stderr in `log`, stdout in `out` (a
    file: a command it stops may leave grandchildren holding a pipe open)."""

    proc: subprocess.Popen[str]
    log: Path
    out: Path

    def finished(self, timeout: float = 30) -> tuple[int, str]:
        """Exit code and stdout, once it exits."""
        code = self.proc.wait(timeout)
        return code, self.out.read_text()


@contextmanager
def shell(cli: Cli, name: str, *args: str) -> Iterator[Shell]:
    """`jmp shell ARGS...` in the background; killed at exit if still running."""
    log, out = cli.tmp / f"{name}.log", cli.tmp / f"{name}.out"
    with log.open("w") as stderr, out.open("w") as stdout:
        proc = subprocess.Popen([JMP, "shell", *args], env=cli.env, cwd=cli.tmp, stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr, text=True)
    try:
        yield Shell(proc, log, out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def client_config(cli: Cli, name: str) -> ClientConfig:
    return ClientConfig.from_file(cli.config_home / "clients" / f"{name}.yaml")


async def dial(config: ClientConfig, lease: str) -> tuple[str, str]:
    from jumpstarter.client.lease import ControllerSession

    session = ControllerSession(config)
    try:
        return await session.dial(lease, 10)
    finally:
        await session.close()


async def open_stream(config: ClientConfig, endpoint: str, token: str, wait: float = 2.0) -> grpc.StatusCode | None:
    """Open a router stream with `token`; the status it ends with within `wait` seconds (None: still open)."""
    from jumpstarter.streams.tunnel import open_stream as start

    credentials = grpc.ssl_channel_credentials(root_certificates=(config.tls.ca or "").encode())
    async with grpc.aio.secure_channel(endpoint, credentials) as channel:
        call = start(channel, token)
        try:
            return await asyncio.wait_for(call.code(), wait)
        except TimeoutError:
            call.cancel()
            return None


def test_shells_lease_queue_and_use_exporters_through_the_router(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice", "bob")
        with exporter(cli, "rpi1", "board=rpi"), exporter(cli, "x86", "board=x86"):
            wait_until(lambda: all(e["status"] == "Available" for e in exporters(cli, "alice").values()),
                       what="exporters available")
            once = cli.jmp("shell", "--client", "alice", "-l", "board=rpi", "--", "j", "lamp", "on", "--level", "30")
            assert once.returncode == 0, once.stderr
            assert "on at 30%" in once.stdout
            assert leases(cli, "alice") == {}  # the shell released the lease it made

            holding = ["--client", "alice", "-l", "board=rpi", "--",
                       "sh", "-c", "j lamp on --level 10 && touch started && while [ ! -e go ]; do sleep 0.02; done"]
            with shell(cli, "alice", *holding) as alice:
                wait_until(lambda: (cli.tmp / "started").exists() or alice.proc.poll() is not None,
                           what="alice's lamp on")
                assert alice.proc.poll() is None, alice.log.read_text()
                with shell(cli, "bob", "--client", "bob", "-l", "board=rpi", "--", "j", "lamp", "status") as bob:
                    wait_until(lambda: "position 1 in queue" in bob.log.read_text(), what="bob queued")
                    # the other exporter is free meanwhile
                    other = cli.jmp("shell", "--client", "bob", "-l", "board=x86", "--", "j", "lamp", "status")
                    assert (other.returncode, other.stdout.strip()) == (0, "0"), other.stderr
                    assert bob.proc.poll() is None
                    (cli.tmp / "go").touch()
                    assert alice.finished()[0] == 0, alice.log.read_text()
                    code, out = bob.finished()
                    assert code == 0, bob.log.read_text()
                    assert out.strip() == "0"  # a fresh lease finds the lamp reset
                    assert "Traceback" not in bob.log.read_text()


def test_hook_output_motd_and_driver_calls_reach_the_shell_through_the_router(cli: Cli) -> None:
    hooks = {"beforeLease": {"script": "echo preparing $LEASE_NAME for $CLIENT_NAME\nj lamp on --level 11\n"
                                       "echo 'mind the fuse' >> \"$JMP_MOTD_FILE\""},
             "afterLease": {"script": "echo cleaning up at $(j lamp status)"}}
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi", hooks=hooks, motd="Welcome to rpi1"):
            result = cli.jmp("shell", "--client", "alice", "-l", "board=rpi", "--", "j", "lamp", "status")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "11"  # the hook drove the same lamp
    assert re.search(r"^\[beforeLease\] preparing \S+ for alice$", result.stderr, re.M), result.stderr
    assert "Welcome to rpi1\nmind the fuse" in result.stderr
    assert "[afterLease] cleaning up at 11" in result.stderr  # EndSession ran it while we listened


def test_ci_flow_create_lease_then_shells_attach_then_delete(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi"):
            created = cli.jmp("create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "10m",
                              "-o", "name")
            assert created.returncode == 0, created.stderr
            name = created.stdout.strip()
            env = dict(cli.env, JMP_LEASE=name)
            test_file = cli.tmp / "test_lamp.py"
            test_file.write_text(
                "from jumpstarter.utils.env import env\n\n"
                "def test_lamp():\n"
                "    with env() as client:\n"
                "        assert client.lamp.call('on', 40) == 'on at 40%'\n"
            )
            pytest_run = cli.run([JMP, "shell", "--client", "alice", "--", str(Path(JMP).parent / "pytest"), "-q",
                                  "-p", "no:cacheprovider", str(test_file)], env=env, timeout=60)
            assert pytest_run.returncode == 0, pytest_run.stdout + pytest_run.stderr
            # attaching does not end the lease: the next shell finds the lamp as the last one left it
            again = cli.jmp("shell", "--client", "alice", "--lease", name, "--", "j", "lamp", "status")
            assert (again.returncode, again.stdout.strip()) == (0, "40"), again.stderr
            assert leases(cli, "alice")[name]["phase"] == "Ready"
            deleted = cli.jmp("delete", "leases", name, "--client", "alice")
            assert deleted.returncode == 0, deleted.stderr
            late = cli.jmp("shell", "--client", "alice", "--lease", name, "--", "true")
            assert_clean_failure(late, f"lease {name} has ended")
            assert late.returncode == 9


def test_lease_expiring_under_a_command_stops_it_with_a_message(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi"):
            args = ["--client", "alice", "-l", "board=rpi", "--duration", "3s", "--",
                    "sh", "-c", "j lamp on && touch started && sleep 60"]
            with shell(cli, "alice", *args) as running:
                code, _ = running.finished(timeout=20)
            stderr = running.log.read_text()
            assert (cli.tmp / "started").exists(), stderr
            assert code == 9, stderr
            assert re.search(r"Error: lease \S+ ended: expired", stderr), stderr
            assert "Traceback" not in stderr
            assert leases(cli, "alice") == {}


def test_exporter_killed_mid_lease_fails_the_call_and_ends_the_lease(cli: Cli) -> None:
    with controller(cli, "127.0.0.1:0", "--offline-grace", "2"):
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi") as victim:
            wait_until(lambda: exporters(cli, "alice")["rpi1"]["status"] == "Available", what="exporter available")
            script = "j lamp blink 100000 --delay 0.02 > blink.out 2> blink.err; echo $? > blink.rc; sleep 60"
            with shell(cli, "alice", "--client", "alice", "-l", "board=rpi", "--", "sh", "-c", script) as running:
                blink = cli.tmp / "blink.out"
                wait_until(lambda: blink.exists() and blink.read_text().count("\n") > 3, what="blinking")
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                rc_file = cli.tmp / "blink.rc"
                wait_until(lambda: rc_file.exists() and rc_file.read_text().strip(), timeout=10,
                           what="the blink call failed")
                assert rc_file.read_text().strip() != "0"
                assert "Error:" in (cli.tmp / "blink.err").read_text()
                code, _ = running.finished(timeout=20)
            stderr = running.log.read_text()
            assert code == 9, stderr
            assert "exporter rpi1 is offline" in stderr
            assert re.search(r"Error: lease \S+ ended: released \(exporter rpi1 went offline\)", stderr), stderr
            assert leases(cli, "alice") == {}


def test_stream_tokens_are_single_use_bound_to_the_lease_and_its_owner(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice", "bob")
        with exporter(cli, "rpi1", "board=rpi"):
            created = cli.jmp("create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "10m",
                              "-o", "name")
            assert created.returncode == 0, created.stderr
            name = created.stdout.strip()
            alice, bob = client_config(cli, "alice"), client_config(cli, "bob")

            # bob may not dial alice's lease, neither through jmp shell nor by hand
            stolen = cli.jmp("shell", "--client", "bob", "--lease", name, "--", "true")
            assert_clean_failure(stolen, "belongs to another client")
            assert stolen.returncode == 4
            from jumpstarter.errors import LeaseEndedError, PermissionDeniedError

            with pytest.raises(PermissionDeniedError):
                asyncio.run(dial(bob, name))

            endpoint, token = asyncio.run(dial(alice, name))
            # the exporter pairs with this stream; a second use of the token is refused
            assert asyncio.run(open_stream(alice, endpoint, token, wait=1.0)) is None
            assert asyncio.run(open_stream(alice, endpoint, token)) is grpc.StatusCode.PERMISSION_DENIED
            assert asyncio.run(open_stream(alice, endpoint, token[:-4] + "AAAA")) is grpc.StatusCode.UNAUTHENTICATED

            _, unused = asyncio.run(dial(alice, name))
            assert cli.jmp("delete", "leases", name, "--client", "alice").returncode == 0
            assert asyncio.run(open_stream(alice, endpoint, unused)) is grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(LeaseEndedError):
                asyncio.run(dial(alice, name))


def _router_port(log: Path) -> int | None:
    match = re.search(r"router listening on [\d.]+:(\d+)", log.read_text())
    return int(match.group(1)) if match else None


@contextmanager
def router(cli: Cli, credential: Path, address: str = "127.0.0.1:0") -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A `jmp controller router` process, attached to the controller."""
    log = cli.tmp / "router.log"
    start = len(log.read_text()) if log.exists() else 0
    with log.open("a") as stderr:
        proc = subprocess.Popen([JMP, "controller", "router", "--address", address, "--credential", str(credential)],
                                env=cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_until(lambda: "attached" in log.read_text()[start:] or proc.poll() is not None, what="router attached")
        assert proc.poll() is None, log.read_text()
        port = _router_port(log)
        assert port is not None
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


def test_separate_router_process_serves_and_survives_a_restart(cli: Cli) -> None:
    with controller(cli, "127.0.0.1:0", "--no-router"):
        create_clients(cli, "alice")
        credential = cli.tmp / "router1.yaml"
        made = cli.jmp("admin", "create", "router", "router1", "--endpoint", "127.0.0.1", "--out", str(credential))
        assert made.returncode == 0, made.stderr
        listed = cli.jmp("admin", "get", "routers", "-o", "name")
        assert listed.stdout.split() == ["router1"], listed.stderr
        with exporter(cli, "rpi1", "board=rpi"), router(cli, credential) as (first, port):
            wait_until(lambda: exporters(cli, "alice")["rpi1"]["status"] == "Available", what="exporter available")
            once = cli.jmp("--log-level", "debug", "shell", "--client", "alice", "-l", "board=rpi", "--",
                           "j", "lamp", "on", "--level", "20")
            assert once.returncode == 0, once.stderr
            assert "on at 20%" in once.stdout
            # the shell's connection is a TLS session met at this router's data port
            announced = re.search(r"router data port: (127\.0\.0\.1:\d+)", (cli.tmp / "router.log").read_text())
            assert announced is not None
            assert f"end-to-end TLS via data port {announced.group(1)}" in once.stderr
            assert "RouterService.Stream" not in once.stderr

            script = ("j lamp on --level 5 && touch started && while [ ! -e go ]; do sleep 0.02; done; "
                      "j lamp status > after.out")
            with shell(cli, "alice", "--client", "alice", "-l", "board=rpi", "--", "sh", "-c", script) as running:
                wait_until(lambda: (cli.tmp / "started").exists() or running.proc.poll() is not None, what="lamp on")
                first.send_signal(signal.SIGTERM)
                assert first.wait(20) == 0
                with router(cli, credential, f"127.0.0.1:{port}"):
                    (cli.tmp / "go").touch()
                    code, _ = running.finished()
                    assert code == 0, running.log.read_text()
                    assert (cli.tmp / "after.out").read_text().strip() == "5"


def test_controller_restart_mid_shell_new_connections_work(cli: Cli) -> None:
    with controller(cli) as first:
        port = first.port
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi"):
            script = ("j lamp on --level 7 && touch started && while [ ! -e go ]; do sleep 0.02; done; "
                      "j lamp status > after.out")
            with shell(cli, "alice", "--client", "alice", "-l", "board=rpi", "--", "sh", "-c", script) as running:
                wait_until(lambda: (cli.tmp / "started").exists() or running.proc.poll() is not None, what="lamp on")
                first.proc.send_signal(signal.SIGTERM)
                assert first.proc.wait(20) == 0
                with controller(cli, f"127.0.0.1:{port}"):
                    (cli.tmp / "go").touch()
                    code, _ = running.finished(timeout=60)
                    assert code == 0, running.log.read_text()
                    assert (cli.tmp / "after.out").read_text().strip() == "7"


async def _routed_stream_outlives(config: ClientConfig, endpoint: str, token: str, delete: Callable[[], None]) -> bool:
    """Open a routed stream, run `delete` (blocking) meanwhile; whether the stream ended within 5 s."""
    from jumpstarter.streams.tunnel import open_stream as start

    credentials = grpc.ssl_channel_credentials(root_certificates=(config.tls.ca or "").encode())
    async with grpc.aio.secure_channel(endpoint, credentials) as channel:
        call = start(channel, token)

        async def drain() -> None:  # the exporter's side talks first (its HTTP/2 preface)
            while await call.read() != grpc.aio.EOF:
                pass

        reading = asyncio.ensure_future(drain())
        done, _ = await asyncio.wait({reading}, timeout=1.0)
        assert not done, "the routed stream should be paired and open"
        await asyncio.to_thread(delete)
        done, _ = await asyncio.wait({reading}, timeout=5.0)
        call.cancel()
        with contextlib.suppress(BaseException):
            await reading
        return not done


def test_deleted_router_is_detached_at_once_and_its_streams_end(cli: Cli) -> None:
    with controller(cli) as running:
        create_clients(cli, "alice")
        credential = cli.tmp / "router1.yaml"
        made = cli.jmp("admin", "create", "router", "router1", "--endpoint", "127.0.0.1", "--out", str(credential))
        assert made.returncode == 0, made.stderr
        with exporter(cli, "rpi1", "board=rpi"), router(cli, credential) as (proc, port):
            created = cli.jmp("create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "10m",
                              "-o", "name")
            assert created.returncode == 0, created.stderr
            name, alice = created.stdout.strip(), client_config(cli, "alice")
            endpoint, token = asyncio.run(dial(alice, name))
            assert endpoint == f"127.0.0.1:{port}"  # the attached router, not the built-in one

            def delete() -> None:
                deleted = cli.jmp("admin", "delete", "router", "router1")
                assert deleted.returncode == 0, deleted.stderr
                # at once: the next Dial hands out the built-in router
                assert asyncio.run(dial(alice, name))[0] == f"127.0.0.1:{running.port}"

            outlived = asyncio.run(_routed_stream_outlives(alice, endpoint, token, delete))
            assert not outlived, (cli.tmp / "router.log").read_text()
            assert proc.wait(10) == 4
            log = (cli.tmp / "router.log").read_text()
            assert "router default/router1 was deleted" in log, log
            assert "Traceback" not in log
            assert cli.jmp("admin", "get", "routers", "-o", "name").stdout.split() == []


def test_router_certificates_only_for_the_host_it_was_created_with(cli: Cli) -> None:
    with controller(cli, "127.0.0.1:0", "--no-router"):
        bad = cli.jmp("admin", "create", "router", "r0", "--endpoint", "lab:port")
        assert_clean_failure(bad, "'lab:port' is not HOST or HOST:PORT")
        assert bad.returncode == 2
        pinned, unpinned = cli.tmp / "pinned.yaml", cli.tmp / "unpinned.yaml"
        for name, args, path in (("pinned", ["--endpoint", "127.0.0.1:8083"], pinned), ("unpinned", [], unpinned)):
            made = cli.jmp("admin", "create", "router", name, *args, "--out", str(path))
            assert made.returncode == 0, made.stderr
        elsewhere = cli.jmp("controller", "router", "--address", "127.0.0.1:0", "--endpoint", "evil.example.com:443",
                            "--credential", str(pinned), timeout=30)
        assert_clean_failure(elsewhere, "router default/pinned may only get a certificate for 127.0.0.1 "
                                        "(its --endpoint), not for evil.example.com")
        assert elsewhere.returncode == 4
        nowhere = cli.jmp("controller", "router", "--address", "127.0.0.1:0", "--credential", str(unpinned),
                          timeout=30)
        assert_clean_failure(nowhere, "router default/unpinned was created without --endpoint")
        assert nowhere.returncode == 4
        with router(cli, pinned):  # at the host it was created with, it gets its certificate and attaches
            pass
