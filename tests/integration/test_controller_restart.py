"""A controller killed with SIGKILL and started again on the same port and data directory: the
database is intact, every identity and lease is still there with its phase, and exporters and
clients find the controller again on their own (nobody restarts them).

The quick test covers the store and the exporter's reconnection; the slow one adds a client
shell holding a lease across the kill (its next driver call goes through the router as before) and
a waiting lease that gets the exporter once the first is released."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.conftest import JMP, Cli, wait_until
from tests.integration.test_controller import Controller, controller, create_clients, exporter, exporters, leases
from tests.integration.test_router import shell


@contextmanager
def controller_on(cli: Cli, port: int, seconds: float = 30.0) -> Iterator[Controller]:
    """`jmp controller run` on 127.0.0.1:PORT with the same data directory, starting it again
    while the port is not yet free (until `seconds` have passed); SIGTERM at exit."""
    log, data_dir = cli.tmp / "controller.log", cli.tmp / "data"
    deadline = time.monotonic() + seconds
    while True:
        start = len(log.read_text()) if log.exists() else 0
        with log.open("a") as stderr:
            proc = subprocess.Popen(
                [JMP, "controller", "run", "--address", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
                env=cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
            )

        def started(start: int = start, proc: subprocess.Popen[str] = proc) -> bool:
            return "admin credential" in log.read_text()[start:] or proc.poll() is not None

        wait_until(started, what="controller start")
        if proc.poll() is None:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the controller could not start on port {port} again:\n{log.read_text()[start:]}")
    try:
        yield Controller(proc, log, data_dir)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


def kill(running: Controller) -> None:
    """SIGKILL: no shutdown code runs, the database is left as the last write left it."""
    running.proc.send_signal(signal.SIGKILL)
    running.proc.wait(10)


def integrity(data_dir: Path) -> tuple[str, int, int]:
    """PRAGMA integrity_check of the killed controller's database, and its identity and lease counts."""
    db = sqlite3.connect(data_dir / "controller.db")
    try:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        identities = db.execute("SELECT count(*) FROM identities").fetchone()[0]
        lease_count = db.execute("SELECT count(*) FROM leases").fetchone()[0]
        return check, identities, lease_count
    finally:
        db.close()


def names(cli: Cli, kind: str) -> list[str]:
    listed = cli.jmp("admin", "get", kind, "-o", "name")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


def test_sigkill_keeps_identities_and_leases_and_the_exporter_comes_back_by_itself(cli: Cli) -> None:
    with controller(cli) as first:
        port = first.port
        create_clients(cli, "alice")
        with exporter(cli, "board1", "board=rpi") as proc:
            wait_until(lambda: exporters(cli, "alice")["board1"]["status"] == "Available", what="exporter available")
            created = cli.jmp("create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "1h",
                              "--lease-id", "held", "-o", "name")
            assert created.returncode == 0, created.stderr

            kill(first)
            # alice, board1, the admin identity; the lease
            assert integrity(first.data_dir) == ("ok", 3, 1)
            assert proc.poll() is None  # the exporter waits for the controller to come back

            with controller_on(cli, port):
                assert names(cli, "clients") == ["alice"]
                assert names(cli, "exporters") == ["board1"]
                held = leases(cli, "alice")["held"]
                assert (held["phase"], held["exporter"]) == ("Ready", "board1")
                wait_until(lambda: exporters(cli, "alice")["board1"]["online"], timeout=20,
                           what="exporter reconnected")
                wait_until(lambda: exporters(cli, "alice")["board1"]["status"] == "LeaseReady",
                           what="lease resumed on the exporter")


@pytest.mark.slow
def test_sigkill_mid_lease_the_shell_carries_on_and_the_waiting_lease_is_served_after(cli: Cli) -> None:
    with controller(cli) as first:
        port = first.port
        create_clients(cli, "alice", "bob")
        with exporter(cli, "board1", "board=rpi"), exporter(cli, "board2", "board=x86"):
            wait_until(lambda: all(e["status"] == "Available" for e in exporters(cli, "alice").values()),
                       what="exporters available")
            created = cli.jmp("create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "1h",
                              "--lease-id", "held", "-o", "name")
            assert created.returncode == 0, created.stderr
            waiting = cli.jmp("create", "lease", "--client", "bob", "-l", "board=rpi", "--duration", "1h",
                              "--lease-id", "waiting", "--no-wait", "-o", "name")
            assert waiting.returncode == 0, waiting.stderr
            assert leases(cli, "bob")["waiting"]["phase"] == "Pending"
            script = ("j lamp on --level 7 && touch started && while [ ! -e go ]; do sleep 0.02; done; "
                      "j lamp status > after.out")
            with shell(cli, "alice", "--client", "alice", "--lease", "held", "--", "sh", "-c", script) as running:
                wait_until(lambda: (cli.tmp / "started").exists() or running.proc.poll() is not None,
                           what="lamp on through the router")
                assert running.proc.poll() is None, running.log.read_text()

                kill(first)
                assert integrity(first.data_dir) == ("ok", 5, 2)

                with controller_on(cli, port):
                    assert names(cli, "clients") == ["alice", "bob"]
                    assert names(cli, "exporters") == ["board1", "board2"]
                    held, queued = leases(cli, "alice")["held"], leases(cli, "bob")["waiting"]
                    assert (held["phase"], held["exporter"]) == ("Ready", "board1")
                    assert queued["phase"] == "Pending"
                    wait_until(lambda: all(e["online"] for e in exporters(cli, "alice").values()), timeout=20,
                               what="both exporters reconnected")

                    (cli.tmp / "go").touch()  # the shell's next call dials through the new controller
                    code, _ = running.finished(timeout=60)
                    assert code == 0, running.log.read_text()
                    assert (cli.tmp / "after.out").read_text().strip() == "7"
                    assert "Traceback" not in running.log.read_text()

                    released = cli.jmp("delete", "leases", "held", "--client", "alice")
                    assert released.returncode == 0, released.stderr
                    wait_until(lambda: leases(cli, "bob")["waiting"]["phase"] == "Ready", timeout=20,
                               what="the waiting lease served")
                    assert leases(cli, "bob")["waiting"]["exporter"] == "board1"
                    status = cli.jmp("shell", "--client", "bob", "--lease", "waiting", "--", "j", "lamp", "status")
                    assert (status.returncode, status.stdout.strip()) == (0, "0"), status.stderr  # reset between
