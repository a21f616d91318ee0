"""Distributed mode, part 1: a real controller process, real exporters and `jmp` clients on loopback.

Covers: admin-created identities with saved configs, exporters registering and going offline when
killed, two clients competing for one exporter, restart keeping identities and leases (with the
exporter reconnecting on its own), and refused tokens (wrong, rotated, deleted)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import JMP, Cli, assert_clean_failure, wait_until


@dataclass
class Controller:
    """A `jmp controller run` process."""

    proc: subprocess.Popen[str]
    log: Path
    data_dir: Path

    @property
    def port(self) -> int:
        match = re.search(r"controller listening on [\d.]+:(\d+)", self.log.read_text())
        assert match, self.log.read_text()
        return int(match.group(1))

    @property
    def credential(self) -> Path:
        return self.data_dir / "admin.yaml"


@contextmanager
def controller(cli: Cli, address: str = "127.0.0.1:0", *extra: str) -> Iterator[Controller]:
    """Run a controller on `address` with data in `<tmp>/data` (and `extra` options); SIGTERM at exit."""
    log = cli.tmp / "controller.log"
    data_dir = cli.tmp / "data"
    with log.open("a") as stderr:
        proc = subprocess.Popen([JMP, "controller", "run", "--address", address, "--data-dir", str(data_dir), *extra],
                                env=cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    running = Controller(proc, log, data_dir)
    start = len(log.read_text()) if log.exists() else 0
    try:
        wait_until(lambda: "admin credential" in log.read_text()[start:] or proc.poll() is not None,
                   what="controller start")
        assert proc.poll() is None, log.read_text()
        cli.env["JMP_ADMIN_CREDENTIAL"] = str(running.credential)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


@contextmanager
def exporter(cli: Cli, name: str, *labels: str, **fields: Any) -> Iterator[subprocess.Popen[str]]:
    """An exporter config with one Lamp (and `fields`: hooks, motd), registered as `name` with the
    controller, running."""
    config = cli.exporter_config(f"{name}.yaml", **fields)
    args = [a for label in labels for a in ("-l", label)]
    created = cli.jmp("admin", "create", "exporter", name, *args, "--out", str(config))
    assert created.returncode == 0, created.stderr
    log = cli.tmp / f"{name}.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen([JMP, "run", "--exporter-config", str(config)], env=cli.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    try:
        wait_until(lambda: "registered with controller" in log.read_text() or proc.poll() is not None,
                   what=f"exporter {name} registered")
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


def exporters(cli: Cli, client: str) -> dict[str, dict[str, Any]]:
    result = cli.jmp("get", "exporters", "--client", client, "--with", "leases,online,status", "-o", "json")
    assert result.returncode == 0, result.stderr
    return {e["name"]: e for e in json.loads(result.stdout)}


def leases(cli: Cli, client: str) -> dict[str, dict[str, Any]]:
    result = cli.jmp("get", "leases", "--client", client, "-o", "json")
    assert result.returncode == 0, result.stderr
    return {lease["name"]: lease for lease in json.loads(result.stdout)}


def create_clients(cli: Cli, *names: str) -> None:
    for name in names:
        result = cli.jmp("admin", "create", "client", name, "--save")
        assert result.returncode == 0, result.stderr
        assert (cli.config_home / "clients" / f"{name}.yaml").is_file()


def test_two_clients_compete_and_a_killed_exporter_goes_offline(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice", "bob")
        with exporter(cli, "board1", "board=rpi", "site=lab") as proc:
            wait_until(lambda: exporters(cli, "alice")["board1"]["status"] == "Available", what="exporter available")
            listed = exporters(cli, "alice")["board1"]
            assert listed["online"] is True
            assert listed["labels"]["board"] == "rpi"
            assert cli.jmp("get", "exporters", "--client", "alice", "-l", "board=x86", "-o", "name").stdout == ""

            first = cli.jmp("create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "10m",
                            "-o", "name")
            assert first.returncode == 0, first.stderr
            lease_a = first.stdout.strip()
            assert leases(cli, "alice")[lease_a]["phase"] == "Ready"
            wait_until(lambda: exporters(cli, "alice")["board1"]["status"] == "LeaseReady", what="lease ready")

            waiting_log = cli.tmp / "bob-create.log"
            with waiting_log.open("w") as stderr:
                second = subprocess.Popen(
                    [JMP, "create", "lease", "--client", "bob", "-l", "board=rpi", "--duration", "PT10M", "-o", "name"],
                    env=cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
                )
            try:
                wait_until(lambda: "position 1 in queue" in waiting_log.read_text(), what="bob queued")
                assert second.poll() is None
                released = cli.jmp("delete", "leases", lease_a, "--client", "alice")
                assert released.returncode == 0, released.stderr
                out, _ = second.communicate(timeout=20)
            finally:
                if second.poll() is None:
                    second.kill()
            assert second.returncode == 0, waiting_log.read_text()
            lease_b = out.strip()
            assert leases(cli, "bob")[lease_b]["exporter"] == "board1"
            assert lease_a not in leases(cli, "alice")
            # alice cannot see or release bob's lease
            stolen = cli.jmp("delete", "leases", lease_b, "--client", "alice")
            assert_clean_failure(stolen, "belongs to another client")
            assert stolen.returncode == 4

            proc.kill()
            proc.wait()
            wait_until(lambda: exporters(cli, "alice")["board1"]["online"] is False, timeout=5,
                       what="exporter marked offline")
            assert exporters(cli, "alice")["board1"]["status"] == "Offline"


def test_restart_keeps_identities_and_leases_and_the_exporter_reconnects(cli: Cli) -> None:
    with controller(cli) as first:
        port = first.port
        create_clients(cli, "alice")
        with exporter(cli, "board1", "board=rpi") as proc:
            wait_until(lambda: exporters(cli, "alice")["board1"]["status"] == "Available", what="exporter available")
            created = cli.jmp("create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "1h",
                              "--lease-id", "kept", "-o", "name")
            assert created.returncode == 0, created.stderr
            first.proc.send_signal(signal.SIGTERM)
            assert first.proc.wait(20) == 0
            assert proc.poll() is None  # the exporter waits for the controller to come back

            with controller(cli, f"127.0.0.1:{port}"):
                listed = cli.jmp("admin", "get", "clients", "-o", "name")
                assert listed.stdout.split() == ["alice"], listed.stderr
                kept = leases(cli, "alice")["kept"]
                assert (kept["phase"], kept["exporter"]) == ("Ready", "board1")
                wait_until(lambda: exporters(cli, "alice")["board1"]["online"], timeout=20,
                           what="exporter reconnected")
                wait_until(lambda: exporters(cli, "alice")["board1"]["status"] == "LeaseReady", what="lease resumed")


def test_wrong_rotated_and_deleted_tokens_are_refused(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice", "bob")
        config_path = cli.config_home / "clients" / "alice.yaml"
        original = config_path.read_text()

        config = yaml.safe_load(original)
        config["token"] = config["token"][:-6] + "AAAAAA"
        config_path.write_text(yaml.safe_dump(config))
        result = cli.jmp("get", "leases", "--client", "alice")
        assert_clean_failure(result, "unauthenticated")
        assert result.returncode == 4

        config_path.write_text(original)
        assert cli.jmp("get", "leases", "--client", "alice").returncode == 0
        stale = cli.tmp / "alice-old.yaml"
        stale.write_text(original)
        rotated = cli.jmp("admin", "rotate", "client", "alice", "--save")
        assert rotated.returncode == 0, rotated.stderr
        result = cli.jmp("get", "leases", "--client-config", str(stale))
        assert_clean_failure(result, "unauthenticated", "rotated")
        assert result.returncode == 4
        assert cli.jmp("get", "leases", "--client", "alice").returncode == 0

        deleted = cli.jmp("admin", "delete", "client", "bob")
        assert deleted.returncode == 0, deleted.stderr
        result = cli.jmp("get", "exporters", "--client", "bob")
        assert_clean_failure(result, "unauthenticated", "no longer exists")
        assert result.returncode == 4

        bad_admin = cli.tmp / "admin-bad.yaml"
        document = yaml.safe_load(Path(cli.env["JMP_ADMIN_CREDENTIAL"]).read_text())
        document["token"] = config["token"]
        bad_admin.write_text(yaml.safe_dump(document))
        result = cli.jmp("admin", "get", "clients", "--admin-credential", str(bad_admin))
        assert_clean_failure(result, "unauthenticated")
        assert result.returncode == 4


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-l", "board=vax"], "unsatisfiable"),
        (["-l", "board in (rpi"], "invalid selector"),
        (["-n", "ghost"], "no exporter named 'ghost'"),
    ],
)
def test_leases_that_can_never_be_granted_fail_at_once(cli: Cli, args: list[str], needle: str) -> None:
    with controller(cli):
        create_clients(cli, "alice")
        result = cli.jmp("create", "lease", "--client", "alice", *args, "--duration", "5m", timeout=20)
        assert_clean_failure(result, needle)
