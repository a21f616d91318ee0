"""Distributed mode as a user meets it: the unhappy paths found by walking through the docs.

A second controller on a port in use fails with one line; a wait that is given up (Ctrl-C,
SIGTERM from a cancelled CI job, --acquisition-timeout of `jmp create lease` and `jmp shell`)
releases the lease instead of leaving it queued; SIGTERM to `jmp shell -l` (or to pytest holding
a session lease) stops the command and releases the lease; a mistyped `jmp shell` option and a
malformed selector are usage errors before anything is leased; `-o json|yaml` of `jmp delete
leases` and `jmp admin get` are structured; a controller-issued token without a refresh token
points at `jmp admin rotate`, not `jmp login`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import JMP, Cli, assert_clean_failure, wait_until
from tests.integration.test_controller import controller, create_clients, exporter, leases


def _start(cli: Cli, log: Path, *args: str) -> subprocess.Popen[str]:
    """`jmp ARGS` in a process group of its own (as a terminal runs it), stderr to `log`."""
    with log.open("w") as stderr:
        return subprocess.Popen([JMP, *args], env=cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr, text=True, start_new_session=True)


def _stop(proc: subprocess.Popen[str], sig: signal.Signals, group: bool = True) -> int:
    """Send `sig` (to the whole process group, like Ctrl-C in a terminal, unless `group` is false)
    and return the exit code."""
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    try:
        return proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_second_controller_or_exporter_on_a_port_in_use_fails_with_one_line(cli: Cli) -> None:
    with controller(cli) as running:
        address = f"127.0.0.1:{running.port}"
        second = cli.jmp("controller", "run", "--address", address, "--data-dir", str(cli.tmp / "other"), timeout=20)
        assert_clean_failure(second, f"cannot listen on {address}: Address already in use")
        direct = cli.jmp("run", "--exporter-config", str(cli.exporter_config()), "--tls-grpc-listener", address,
                         "--passphrase", "x", timeout=20)
        assert_clean_failure(direct, f"cannot listen on {address}: Address already in use")
        assert running.proc.poll() is None


def test_giving_up_a_wait_in_the_queue_releases_the_lease(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice", "bob")
        with exporter(cli, "board1", "board=rpi"):
            held = cli.jmp("create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "10m", "-o", "name")
            assert held.returncode == 0, held.stderr
            bob = ["--client", "bob", "-l", "board=rpi"]
            waits = {  # how the wait is given up: what a user or a CI runner does
                "ctrl-c": (signal.SIGINT, ["create", "lease", *bob, "--duration", "5m"]),
                "sigterm": (signal.SIGTERM, ["create", "lease", *bob, "--duration", "5m"]),
                "shell-sigterm": (signal.SIGTERM, ["shell", *bob, "--", "true"]),
            }
            waiting = {what: _start(cli, cli.tmp / f"{what}.log", *args) for what, (_, args) in waits.items()}
            for what, proc in waiting.items():
                log = cli.tmp / f"{what}.log"
                wait_until(lambda: "in queue" in log.read_text(), what=f"{what}: bob queued")  # noqa: B023
                code = _stop(proc, waits[what][0])
                assert code == 130 if what == "ctrl-c" else code != 0, (what, code)
                assert "Traceback" not in log.read_text(), log.read_text()
            assert leases(cli, "bob") == {}, "a lease given up on stayed queued"
            assert list(leases(cli, "alice")) == [held.stdout.strip()]


def test_running_out_of_acquisition_time_releases_the_lease(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice", "bob")
        with exporter(cli, "board1", "board=rpi"):
            held = cli.jmp("create", "lease", "--client", "alice", "-n", "board1", "--duration", "10m")
            assert held.returncode == 0, held.stderr
            timed_out = cli.jmp("create", "lease", "--client", "bob", "-l", "board=rpi", "--duration", "5m",
                                "--acquisition-timeout", "0.3")
            assert_clean_failure(timed_out, "not ready after 0.3s", "released lease")
            assert timed_out.returncode == 5
            by_name = cli.jmp("shell", "--client", "bob", "-n", "board1", "--acquisition-timeout", "1", "--", "true")
            assert_clean_failure(by_name, "not ready after 1s")
            assert by_name.returncode == 5
            assert leases(cli, "bob") == {}


def test_sigterm_to_a_leased_shell_or_pytest_releases_the_lease(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "board1", "board=rpi"):
            log, started = cli.tmp / "shell.log", cli.tmp / "started"
            proc = _start(cli, log, "shell", "--client", "alice", "-l", "board=rpi", "--",
                          "sh", "-c", f"touch {started}; exec sleep 60")
            wait_until(started.exists, what="the command running on the lease")
            assert _stop(proc, signal.SIGTERM, group=False) == 128 + signal.SIGTERM, log.read_text()
            assert "Traceback" not in log.read_text()
            assert leases(cli, "alice") == {}

            # the pytest plugin's session lease, when the CI job running pytest is cancelled
            (cli.tmp / "test_long.py").write_text(
                f"import pathlib, time\n\ndef test_long(client):\n    pathlib.Path({str(started)!r}).touch()\n"
                "    time.sleep(60)\n"
            )
            started.unlink()
            with (cli.tmp / "pytest.log").open("w") as out:
                tests = subprocess.Popen([str(Path(JMP).parent / "pytest"), "-q", "-p", "no:cacheprovider",
                                          "--jmp-client", "alice", "--jmp-selector", "board=rpi", "test_long.py"],
                                         cwd=cli.tmp, env=cli.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            try:
                wait_until(started.exists, what="the test running on the lease")
                assert len(leases(cli, "alice")) == 1
                tests.send_signal(signal.SIGTERM)
                assert tests.wait(20) == pytest.ExitCode.INTERRUPTED
            finally:
                if tests.poll() is None:
                    tests.kill()
            assert leases(cli, "alice") == {}, (cli.tmp / "pytest.log").read_text()


def test_malformed_selectors_are_usage_errors_and_outputs_are_structured(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice")
        for args in (["get", "exporters"], ["create", "lease", "--duration", "5m"], ["shell"]):
            result = cli.jmp(*args, "--client", "alice", "-l", "board in (rpi")
            assert_clean_failure(result, "invalid selector 'board in (rpi'", "^")
            assert result.returncode == 2, result.stderr
        typo = cli.jmp("shell", "--client", "alice", "-l", "board=rpi", "--duratoin", "5m", "--", "true")
        assert_clean_failure(typo, "No such option '--duratoin'", "Did you mean '--duration'?")
        assert typo.returncode == 2
        assert leases(cli, "alice") == {}  # nothing was sent

        created = cli.jmp("admin", "create", "exporter", "board1", "-l", "board=rpi")
        assert created.returncode == 0, created.stderr
        listed = json.loads(cli.jmp("admin", "get", "exporters", "-o", "json").stdout)
        assert listed[0]["labels"] == {"board": "rpi"}
        lease = cli.jmp("create", "lease", "--client", "alice", "-n", "board1", "--duration", "5m", "--no-wait",
                        "-o", "name").stdout.strip()
        released = cli.jmp("delete", "leases", "--client", "alice", "--all", "-o", "yaml")
        assert released.returncode == 0, released.stderr
        assert yaml.safe_load(released.stdout) == [{"name": lease, "released": True}]
        ended = json.loads(cli.jmp("get", "leases", "--client", "alice", "-a", "-o", "json").stdout)
        assert [(e["phase"], e["message"]) for e in ended] == [("Ended", "released (released by the client)")]

        not_admin = cli.jmp("admin", "get", "clients", "--admin-credential",
                            str(cli.config_home / "clients" / "alice.yaml"))
        assert_clean_failure(not_admin, "only an admin may call this, not client default/alice")
        assert not_admin.returncode == 4

        # a token from `jmp admin create` is renewed by an administrator, not by `jmp login`
        renewed = cli.jmp("auth", "refresh", "--client", "alice")
        assert_clean_failure(renewed, "has no refresh token", "jmp admin rotate client")

        # ...or by the client itself: `jmp auth rotate` replaces it in the config, the old one is dead
        alice_config = cli.config_home / "clients" / "alice.yaml"
        old_config = cli.tmp / "alice-old.yaml"
        old_config.write_text(alice_config.read_text())
        rotated = cli.jmp("auth", "rotate", "--client", "alice")
        assert rotated.returncode == 0, rotated.stderr
        assert "the old one no longer works" in rotated.stdout
        assert yaml.safe_load(alice_config.read_text())["token"] != yaml.safe_load(old_config.read_text())["token"]
        assert cli.jmp("get", "leases", "--client", "alice").returncode == 0
        stale = cli.jmp("get", "leases", "--client-config", str(old_config))
        assert_clean_failure(stale, "unauthenticated")
        assert stale.returncode == 4


def test_everyone_sees_who_holds_an_exporter_but_lists_and_deletes_only_their_own_leases(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice", "bob")
        with exporter(cli, "rpi1", "board=rpi"), exporter(cli, "x86", "board=x86"):
            held = {}
            for who, board in (("bob", "rpi"), ("alice", "x86")):
                created = cli.jmp("create", "lease", "--client", who, "-l", f"board={board}", "--duration", "1h",
                                  "-o", "name")
                assert created.returncode == 0, created.stderr
                held[who] = created.stdout.strip()
            listed = cli.jmp("get", "exporters", "--client", "alice", "--with", "leases", "-o", "json")
            assert listed.returncode == 0, listed.stderr
            holders = {e["name"]: e["lease"] for e in json.loads(listed.stdout)}
            assert holders == {"rpi1": f"{held['bob']} (bob)", "x86": f"{held['alice']} (alice)"}

            assert list(leases(cli, "alice")) == [held["alice"]]  # only her own by default
            everyone = cli.jmp("get", "leases", "--client", "alice", "-A", "-o", "json")
            assert everyone.returncode == 0, everyone.stderr
            assert {lease["name"]: lease["client"] for lease in json.loads(everyone.stdout)} == {
                held["alice"]: "alice", held["bob"]: "bob"}

            deleted = cli.jmp("delete", "leases", "--client", "alice", "--all", "-o", "name")
            assert (deleted.returncode, deleted.stdout.split()) == (0, [held["alice"]]), deleted.stderr
            assert list(leases(cli, "bob")) == [held["bob"]]  # untouched
