"""Lease management against a real controller process: scheduled leases (`--begin-time`),
`jmp update lease` (duration, begin time, transfer) and access policies (`jmp admin ... policy`).

Reuses the controller/exporter fixtures of test_controller; every wait polls a condition."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from typing import Any

import pytest

from tests.integration.conftest import JMP, Cli, assert_clean_failure, wait_until
from tests.integration.test_controller import controller, create_clients, exporter, exporters, leases


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def lease_json(cli: Cli, *args: str) -> dict[str, Any]:
    result = cli.jmp(*args, "-o", "json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert len(found) == 1, found
    return dict(found[0])


def available(cli: Cli, client: str = "alice", name: str = "board1") -> None:
    wait_until(lambda: exporters(cli, client)[name]["status"] == "Available", what=f"{name} available")


def dial(cli: Cli, client: str, lease: str) -> Any:
    """`ControllerService.Dial` for a lease with a client's saved credentials (what `jmp shell
    --lease` does first)."""
    from jumpstarter.client.controller import ControllerClient
    from jumpstarter.config.client import ClientConfig
    from jumpstarter.protocol.v1 import jumpstarter_pb2, jumpstarter_pb2_grpc

    config = ClientConfig.from_file(cli.config_home / "clients" / f"{client}.yaml")
    with ControllerClient(config) as conn:
        stub = jumpstarter_pb2_grpc.ControllerServiceStub(conn.channel)
        return conn.call(stub.Dial, jumpstarter_pb2.DialRequest(lease_name=lease))


def test_scheduled_lease_starts_at_its_begin_time(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "board1", "board=rpi"):
            available(cli)
            created = lease_json(cli, "create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "10m",
                                 "--begin-time", "+3s", "--no-wait")
            assert (created["phase"], created["message"]) == ("Pending", "waiting for its begin time")
            assert created["exporter"] is None
            name = created["name"]
            ready = wait_until(lambda: (lease := leases(cli, "alice")[name])["phase"] == "Ready" and lease,
                               timeout=10, what="lease ready at its begin time")
            begin, expires = when(ready["begin"]), when(ready["expires"])
            assert begin >= when(created["begin_time"])  # not before it
            assert (begin - when(created["begin_time"])).total_seconds() < 2  # at once (on a busy box: within 2 s)
            assert (expires - begin).total_seconds() == 600  # its duration counts from the begin
            wait_until(lambda: exporters(cli, "alice")["board1"]["status"] == "LeaseReady", what="exporter leased")

            # waiting for a scheduled lease: `jmp create lease` returns once it is Ready
            assert cli.jmp("delete", "leases", name, "--client", "alice").returncode == 0
            available(cli)
            waited = lease_json(cli, "create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "5m",
                                "--begin-time", "+1s")
            assert waited["phase"] == "Ready"


@pytest.mark.parametrize("bad", ["tomorrow", "2026-13-01T00:00:00Z", "+soon"])
def test_nonsense_begin_time_is_refused_before_anything_is_sent(cli: Cli, bad: str) -> None:
    for command in (("create", "lease", "-l", "board=rpi", "--duration", "5m"), ("update", "lease", "NAME")):
        result = cli.jmp(*command, "--begin-time", bad)
        assert_clean_failure(result, "--begin-time", "begin time")
        assert result.returncode == 2


def test_update_duration_and_begin_time(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "board1", "board=rpi"):
            available(cli)
            lease = lease_json(cli, "create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "10m")
            name = lease["name"]

            longer = cli.jmp("update", "lease", name, "--client", "alice", "--duration", "1h", "-o", "json")
            assert longer.returncode == 0, longer.stderr
            assert "extended by 50m" in longer.stderr and lease["expires"] in longer.stderr
            updated = json.loads(longer.stdout)[0]
            assert (when(updated["expires"]) - when(lease["begin"])).total_seconds() == 3600

            shorter = cli.jmp("update", "lease", name, "--client", "alice", "--duration", "20m")
            assert shorter.returncode == 0, shorter.stderr
            assert "shortened by 40m" in shorter.stderr

            refused = cli.jmp("update", "lease", name, "--client", "alice", "--begin-time", "+1h")
            assert_clean_failure(refused, "already started")

            nothing = cli.jmp("update", "lease", name, "--client", "alice")
            assert_clean_failure(nothing, "--duration")

            over = cli.jmp("update", "lease", name, "--client", "alice", "--duration", "1ms")
            assert over.returncode == 0, over.stderr
            assert "ended at once" in over.stderr
            assert name not in leases(cli, "alice")

            # a lease that has not started may move its begin time
            later = lease_json(cli, "create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "5m",
                               "--begin-time", "+1h", "--no-wait")
            moved = lease_json(cli, "update", "lease", later["name"], "--client", "alice", "--begin-time", "+2h")
            shift = when(moved["begin_time"]) - when(later["begin_time"])
            assert shift.total_seconds() == pytest.approx(3600, abs=30)
            assert moved["phase"] == "Pending"
            table = cli.jmp("get", "leases", "--client", "alice")  # the table shows when it is to begin
            assert f"{moved['begin_time']} (scheduled)" in table.stdout, table.stdout


def test_transfer_to_another_client(cli: Cli) -> None:
    from jumpstarter.errors import PermissionDeniedError

    with controller(cli):
        create_clients(cli, "alice", "bob")
        with exporter(cli, "board1", "board=rpi"):
            available(cli)
            name = lease_json(cli, "create", "lease", "--client", "alice", "-l", "board=rpi", "--duration",
                              "10m")["name"]
            wait_until(lambda: exporters(cli, "alice")["board1"]["status"] == "LeaseReady", what="exporter leased")

            ghost = cli.jmp("update", "lease", name, "--client", "alice", "--to-client", "nobody")
            assert_clean_failure(ghost, "client default/nobody not found")
            assert ghost.returncode == 7
            stolen = cli.jmp("update", "lease", name, "--client", "bob", "--to-client", "bob")
            assert_clean_failure(stolen, "belongs to another client")
            assert stolen.returncode == 4

            moved = cli.jmp("update", "lease", name, "--client", "alice", "--to-client", "bob", "-o", "json")
            assert moved.returncode == 0, moved.stderr
            assert "now belongs to client bob" in moved.stderr
            assert json.loads(moved.stdout)[0]["client"] == "bob"

            assert name not in leases(cli, "alice")
            assert leases(cli, "bob")[name]["exporter"] == "board1"
            with pytest.raises(PermissionDeniedError, match="belongs to another client"):
                dial(cli, "alice", name)
            assert dial(cli, "bob", name).router_token  # the new owner reaches the exporter
            for args in (("update", "lease", name, "--duration", "1h"), ("delete", "leases", name)):
                result = cli.jmp(*args, "--client", "alice")
                assert_clean_failure(result, "belongs to another client")
                assert result.returncode == 4
            released = cli.jmp("delete", "leases", name, "--client", "bob")
            assert released.returncode == 0, released.stderr


def test_access_policies(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice", "bob")
        outsider = cli.jmp("admin", "create", "client", "mallory", "-n", "lab", "--save")
        assert outsider.returncode == 0, outsider.stderr
        with exporter(cli, "board1", "board=rpi"):
            available(cli)
            bad = cli.jmp("admin", "create", "policy", "p", "--exporter-selector", "board in (rpi", "--client", "alice")
            assert_clean_failure(bad, "--exporter-selector", "invalid selector", "^")
            created = cli.jmp("admin", "create", "policy", "rpi-alice", "--exporter-selector", "board=rpi",
                              "--client", "alice", "--client", "mallory", "--maximum-duration", "30m",
                              "--priority", "3")
            assert created.returncode == 0, created.stderr
            again = cli.jmp("admin", "create", "policy", "rpi-alice", "--exporter-selector", "board=rpi")
            assert_clean_failure(again, "already exists")
            listed = cli.jmp("admin", "get", "policies", "-o", "json")
            assert listed.returncode == 0, listed.stderr
            assert json.loads(listed.stdout) == [{
                "name": "rpi-alice", "namespace": "default", "exporter_selector": "board=rpi",
                "clients": ["alice", "mallory"], "client_selector": None, "maximum_duration": "30m", "priority": 3,
            }]

            denied = cli.jmp("create", "lease", "--client", "bob", "-l", "board=rpi", "--duration", "10m")
            assert_clean_failure(denied, "unsatisfiable", "no access policy admits client 'bob'")
            too_long = cli.jmp("create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "1h")
            assert_clean_failure(too_long, "unsatisfiable", "limits these leases to 30m (asked for 1h)")
            # a client of another namespace never gets it, even when a policy names it
            outside = cli.jmp("create", "lease", "--client", "mallory", "-n", "board1", "--duration", "5m")
            assert_clean_failure(outside, "no exporter named 'board1'")
            assert exporters(cli, "mallory") == {}

            held = lease_json(cli, "create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "10m")
            assert held["phase"] == "Ready"
            longer = cli.jmp("update", "lease", held["name"], "--client", "alice", "--duration", "2h")
            assert_clean_failure(longer, "limits these leases to 30m")
            transfer = cli.jmp("update", "lease", held["name"], "--client", "alice", "--to-client", "bob")
            assert_clean_failure(transfer, "may not hold exporter 'board1'")

            # deleting the policy restores the default: bob may lease, and a waiting bob is served
            deleted = cli.jmp("admin", "delete", "policy", "rpi-alice")
            assert deleted.returncode == 0, deleted.stderr
            assert cli.jmp("admin", "get", "policies", "-o", "name").stdout == ""
            log = cli.tmp / "bob-wait.log"
            with log.open("w") as stderr:
                waiting = subprocess.Popen(
                    [JMP, "create", "lease", "--client", "bob", "-l", "board=rpi", "--duration", "10m", "-o", "name"],
                    env=cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
                )
            try:
                wait_until(lambda: "position 1 in queue" in log.read_text(), what="bob queued")
                # a policy created now judges the waiting lease at once
                shut = cli.jmp("admin", "create", "policy", "only-alice", "--exporter-selector", "board=rpi",
                               "--client", "alice")
                assert shut.returncode == 0, shut.stderr
                waiting.communicate(timeout=20)
            finally:
                if waiting.poll() is None:
                    waiting.kill()
            assert waiting.returncode != 0
            assert "no access policy admits client 'bob'" in log.read_text()

            assert cli.jmp("admin", "delete", "policy", "only-alice").returncode == 0
            missing = cli.jmp("admin", "delete", "policy", "only-alice")
            assert_clean_failure(missing, "not found")
            assert cli.jmp("delete", "leases", held["name"], "--client", "alice").returncode == 0
            available(cli)
            granted = lease_json(cli, "create", "lease", "--client", "bob", "-l", "board=rpi", "--duration", "10m")
            assert granted["phase"] == "Ready"


POLICY_FILE = """\
apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterAccessPolicy
metadata: {name: lab}
spec:
  exporterSelector: {matchLabels: {board: rpi}}
  policies:
    - priority: 5
      maximumDuration: 1h
      from:
        - clientSelector: {matchLabels: {team: qa}}
        - clientSelector: {matchLabels: {team: ci}}
"""


def test_apply_an_exporter_access_policy_file(cli: Cli) -> None:
    with controller(cli):
        path = cli.tmp / "policy.yaml"
        path.write_text(POLICY_FILE)
        applied = cli.jmp("admin", "apply", "policy", "-f", str(path))
        assert applied.returncode == 0, applied.stderr
        listed = json.loads(cli.jmp("admin", "get", "policies", "-o", "json").stdout)
        assert [(p["name"], p["client_selector"], p["maximum_duration"], p["priority"]) for p in listed] == [
            ("lab.0.0", "team=qa", "1h", 5), ("lab.0.1", "team=ci", "1h", 5),
        ]
        # applying a shorter version removes what it no longer has
        path.write_text(POLICY_FILE.split("        - clientSelector: {matchLabels: {team: ci}}")[0])
        again = cli.jmp("admin", "apply", "policy", "-f", str(path))
        assert again.returncode == 0, again.stderr
        assert "deleted lab.0.0, lab.0.1" in again.stdout
        assert cli.jmp("admin", "get", "policies", "-o", "name").stdout.split() == ["lab"]

        path.write_text(POLICY_FILE.replace("maximumDuration: 1h", "maximumDuration: forever"))
        bad = cli.jmp("admin", "apply", "policy", "-f", str(path))
        assert_clean_failure(bad, str(path), "invalid duration 'forever'")
