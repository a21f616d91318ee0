"""The pytest plugin in distributed mode, with real processes: a controller, exporters registered
with it, and `pytest --jmp-client ALIAS --jmp-selector K=V` leasing a device for its session (one
per pytest-xdist worker) and releasing it afterwards, also when tests fail or the run is
interrupted with Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.integration.conftest import Cli, wait_until
from tests.integration.test_controller import controller, create_clients, exporter, exporters, leases

PYTEST = str(Path(sys.executable).parent / "pytest")

LEASED_TESTS = """\
import subprocess, sys
from pathlib import Path

from jumpstarter.utils.env import env_with_metadata


def test_drive_the_leased_lamp(client, jumpstarter_metadata):
    assert client.lamp.call("on", 40) == "on at 40%"
    assert jumpstarter_metadata.name == "rpi1"
    assert jumpstarter_metadata.labels["board"] == "rpi"
    assert jumpstarter_metadata.lease


def test_same_lease_for_the_session_and_j_reaches_it(client):
    with env_with_metadata() as (other, meta):  # what helper code written for `jmp shell` does
        assert other.lamp.call("status") == 40
    j = str(Path(sys.executable).parent / "j")
    result = subprocess.run([j, "lamp", "status"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "40"), result.stderr


def test_failing(client):
    assert client.lamp.call("status") == 99
"""


def run_pytest(cli: Cli, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return cli.run([PYTEST, "-q", "-p", "no:cacheprovider", *args], timeout=timeout, cwd=cli.tmp)


def test_pytest_leases_a_device_for_the_session_and_releases_it_after_failures(cli: Cli) -> None:
    (cli.tmp / "test_leased.py").write_text(LEASED_TESTS)
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi"), exporter(cli, "x86", "board=x86"):
            wait_until(lambda: all(e["status"] == "Available" for e in exporters(cli, "alice").values()),
                       what="exporters available")
            result = run_pytest(cli, "--jmp-client", "alice", "--jmp-selector", "board=rpi",
                                "--junitxml", str(cli.tmp / "report.xml"), str(cli.tmp / "test_leased.py"))
            assert result.returncode == 1, result.stdout + result.stderr
            assert "1 failed, 2 passed" in result.stdout, result.stdout
            assert "Traceback" not in result.stderr
            properties = {p.get("name"): p.get("value")
                          for p in ElementTree.parse(cli.tmp / "report.xml").iter("property")}
            assert properties["jumpstarter_exporter"] == "rpi1"
            lease_name = properties["jumpstarter_lease"]
            assert lease_name
            assert leases(cli, "alice") == {}  # released at the end of the session
            every = cli.jmp("get", "leases", "--client", "alice", "-a", "-o", "name")
            assert lease_name in every.stdout.split()


INTERRUPTED_TESTS = """\
import time
from pathlib import Path


def test_waits_for_ctrl_c(client):
    client.lamp.call("on", 5)
    Path("started").touch()
    while True:
        time.sleep(0.05)
"""


def test_ctrl_c_releases_the_lease(cli: Cli) -> None:
    (cli.tmp / "test_wait.py").write_text(INTERRUPTED_TESTS)
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi"):
            wait_until(lambda: exporters(cli, "alice")["rpi1"]["status"] == "Available", what="exporter available")
            out = cli.tmp / "pytest.out"
            with out.open("w") as stdout:
                proc = subprocess.Popen(
                    [PYTEST, "-q", "-p", "no:cacheprovider", "--jmp-client", "alice", "--jmp-selector", "board=rpi",
                     "test_wait.py"],
                    env=cli.env, cwd=cli.tmp, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
                )
            try:
                wait_until(lambda: (cli.tmp / "started").exists() or proc.poll() is not None, timeout=60,
                           what="the test holding the lease")
                assert proc.poll() is None, out.read_text()
                assert len(leases(cli, "alice")) == 1
                proc.send_signal(signal.SIGINT)
                assert proc.wait(30) == 2, out.read_text()  # pytest's "interrupted"
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert leases(cli, "alice") == {}, out.read_text()


XDIST_TESTS = """\
import os
import time
from pathlib import Path


def test_record_my_device(jumpstarter_metadata):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(f"device-{worker}").write_text(jumpstarter_metadata.name)
    # hold the lease until the other worker holds one too: both at once, or a worker that finished
    # early could hand its device to the other one (a barrier with a deadline, not a sleep)
    deadline = time.monotonic() + 60
    while len(list(Path().glob("device-gw*"))) < 2:
        assert time.monotonic() < deadline, "the other worker never got a device"
        time.sleep(0.05)


def test_other(client):
    assert client.lamp.call("status") == 0
"""


def test_xdist_workers_each_lease_their_own_device_or_are_told_there_are_too_few(cli: Cli) -> None:
    pytest.importorskip("xdist")
    (cli.tmp / "test_xdist.py").write_text(XDIST_TESTS)
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi"), exporter(cli, "rpi2", "board=rpi"):
            wait_until(lambda: all(e["status"] == "Available" for e in exporters(cli, "alice").values()),
                       what="exporters available")
            # 4 tests spread over 2 workers so each surely runs one: load scheduling would be luck
            (cli.tmp / "test_xdist_more.py").write_text(XDIST_TESTS)
            result = run_pytest(cli, "-n", "2", "--dist", "loadfile", "--jmp-client", "alice",
                                "--jmp-selector", "board=rpi", "test_xdist.py", "test_xdist_more.py")
            assert result.returncode == 0, result.stdout + result.stderr
            devices = sorted(p.read_text() for p in cli.tmp.glob("device-gw*"))
            assert devices == ["rpi1", "rpi2"], devices
            assert leases(cli, "alice") == {}

            too_many = run_pytest(cli, "-n", "3", "--jmp-client", "alice", "--jmp-selector", "board=rpi",
                                  "test_xdist.py")
            assert too_many.returncode != 0
            assert "pytest-xdist runs 3 workers and each needs a device of its own, but only 2 exporters match " \
                   "board=rpi; run with -n 2 or fewer" in too_many.stdout, too_many.stdout
            assert leases(cli, "alice") == {}
