"""A routed connection whose peer vanishes mid-stream ends quietly everywhere: no traceback in the
controller (its router), the exporter or the client's `jmp shell`, whichever side disappeared.

Real processes: a controller, an exporter, `jmp shell` running `j lamp blink` (a server stream
pouring responses through the router); then one of them is killed mid-stream: the `j` process (the
shell's tunnel sees its socket reset while writing), the whole shell (the router and the exporter
see the client's stream vanish), the exporter, or a separate router process.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.integration.conftest import Cli, wait_until
from tests.integration.test_controller import controller, create_clients, exporter, exporters, leases
from tests.integration.test_router import router, shell

#: `j lamp blink` as fast as it goes, its pid in `j.pid`, its output in `blink.out`.
BLINK = "j lamp blink 100000000 > blink.out 2> blink.err & echo $! > j.pid; wait $!"


def _blinking(tmp: Path) -> bool:
    out = tmp / "blink.out"
    return (tmp / "j.pid").exists() and out.exists() and out.read_text().count("\n") > 20


def _no_traceback(*logs: Path) -> None:
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text, f"{log.name}:\n{text}"


def test_a_client_vanishing_mid_stream_leaves_no_traceback(cli: Cli) -> None:
    with controller(cli) as running:
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi"):
            wait_until(lambda: exporters(cli, "alice")["rpi1"]["status"] == "Available", what="exporter available")

            # the `j` process dies: the shell's tunnel finds its connection reset
            with shell(cli, "alice", "--client", "alice", "-l", "board=rpi", "--", "sh", "-c", BLINK) as first:
                wait_until(lambda: _blinking(cli.tmp), what="blinking")
                os.kill(int((cli.tmp / "j.pid").read_text()), signal.SIGKILL)
                code, _ = first.finished()
                assert code == 128 + signal.SIGKILL, first.log.read_text()
            wait_until(lambda: leases(cli, "alice") == {}, what="the first lease released")
            _no_traceback(first.log)

            # the whole shell dies: the router and the exporter see the client's stream vanish
            for name in ("j.pid", "blink.out"):
                (cli.tmp / name).unlink()
            with shell(cli, "alice", "--client", "alice", "-l", "board=rpi", "--", "sh", "-c", BLINK) as second:
                wait_until(lambda: _blinking(cli.tmp), what="blinking again")
                second.proc.send_signal(signal.SIGKILL)
                second.proc.wait()
                os.kill(int((cli.tmp / "j.pid").read_text()), signal.SIGKILL)  # the orphan
            (name,) = leases(cli, "alice")
            deleted = cli.jmp("delete", "lease", "--client", "alice", name)
            assert deleted.returncode == 0, deleted.stderr
            wait_until(lambda: exporters(cli, "alice")["rpi1"]["status"] == "Available", what="exporter free again")
        _no_traceback(running.log, cli.tmp / "rpi1.log")


def test_an_exporter_vanishing_mid_stream_leaves_no_traceback(cli: Cli) -> None:
    with controller(cli, "127.0.0.1:0", "--offline-grace", "1") as running:
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi") as victim:
            wait_until(lambda: exporters(cli, "alice")["rpi1"]["status"] == "Available", what="exporter available")
            with shell(cli, "alice", "--client", "alice", "-l", "board=rpi", "--", "sh", "-c", BLINK) as client:
                wait_until(lambda: _blinking(cli.tmp), what="blinking")
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                code, _ = client.finished()
                assert code != 0
                assert "Error:" in (cli.tmp / "blink.err").read_text()
        _no_traceback(running.log, client.log, cli.tmp / "blink.err")


def test_a_router_vanishing_mid_stream_leaves_no_traceback(cli: Cli) -> None:
    with controller(cli, "127.0.0.1:0", "--no-router"):
        create_clients(cli, "alice")
        credential = cli.tmp / "router1.yaml"
        made = cli.jmp("admin", "create", "router", "router1", "--endpoint", "127.0.0.1", "--out", str(credential))
        assert made.returncode == 0, made.stderr
        with exporter(cli, "rpi1", "board=rpi"), router(cli, credential) as (victim, port):
            wait_until(lambda: exporters(cli, "alice")["rpi1"]["status"] == "Available", what="exporter available")
            with shell(cli, "alice", "--client", "alice", "-l", "board=rpi", "--", "sh", "-c", BLINK) as client:
                wait_until(lambda: _blinking(cli.tmp), what="blinking")
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                wait_until(lambda: "Error:" in (cli.tmp / "blink.err").read_text(), what="the blink call failed")
                # back again, so that the shell can end the exporter's session and release the lease
                with router(cli, credential, f"127.0.0.1:{port}"):
                    code, _ = client.finished()
                    assert code not in (0, None), client.log.read_text()
                    wait_until(lambda: exporters(cli, "alice")["rpi1"]["status"] == "Available",
                               what="exporter free again")
        _no_traceback(client.log, cli.tmp / "blink.err", cli.tmp / "rpi1.log", cli.tmp / "router.log")
