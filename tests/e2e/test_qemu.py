"""End to end: the README demo against a real QEMU guest, and no QEMU outliving its exporter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUEST = Path("/var/tmp/jumpstarter-dut")
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.skipif(
        not (GUEST / "kernel").is_file(), reason=f"demo guest not built in {GUEST} (make demo builds it)"
    ),
    pytest.mark.skipif(
        subprocess.run(["which", "qemu-system-x86_64"], capture_output=True).returncode != 0,
        reason="qemu-system-x86_64 not installed (apt-get install qemu-system-x86)",
    ),
]


def qemu_pids() -> set[int]:
    """PIDs of QEMU processes started by our driver (their run directory is jmp-qemu-*)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu-system" in cmdline and b"jmp-qemu-" in cmdline:
                found.add(int(entry.name))
    return found


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_readme_demo_passes_and_leaves_nothing_running() -> None:
    before = qemu_pids()
    done = subprocess.run(
        [str(ROOT / "examples/qemu/run-demo.sh")], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 passed" in done.stdout
    wait_until(lambda: not (qemu_pids() - before), 10, "QEMU to exit after the demo")


def test_sigkill_of_the_shell_kills_qemu() -> None:
    before = qemu_pids()
    shell = subprocess.Popen(
        [
            str(BIN / "jmp"),
            "shell",
            "--exporter-config",
            str(ROOT / "examples/qemu/exporter.yaml"),
            "--",
            "sh",
            "-c",
            "j qemu power on && echo powered-on && sleep 120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert shell.stdout is not None
        line = shell.stdout.readline()
        assert "powered-on" in line, shell.stderr.read() if shell.stderr else ""
        started = qemu_pids() - before
        assert started, "QEMU did not start"
        os.kill(shell.pid, signal.SIGKILL)
        wait_until(lambda: not (qemu_pids() & started), 10, "QEMU to die with its exporter")
    finally:
        shell.kill()
        shell.wait()
        subprocess.run(["pkill", "-f", "sleep 120"], check=False)


CLIENT = """
import sys
from anyio.from_thread import start_blocking_portal
from jumpstarter.client.client import client_from_target
from jumpstarter.client.direct import DirectTarget
target = DirectTarget(address=sys.argv[1], insecure=True)
with start_blocking_portal("asyncio") as portal, client_from_target(target, portal, unsafe=True) as root:
    root.qemu.power.on()
    print("powered-on", flush=True)
    sys.stdin.read()  # hold the session until killed
"""


def test_client_killed_while_guest_runs_stops_the_vm(tmp_path: Path) -> None:
    """Direct mode: the client dies mid-session; the exporter ends the session and the VM stops."""
    import re

    before = qemu_pids()
    exporter = subprocess.Popen(
        [str(BIN / "jmp"), "run", "--exporter-config", str(ROOT / "examples/qemu/exporter.yaml"),
         "--tls-grpc-listener", "127.0.0.1:0", "--tls-grpc-insecure", "--insecure-no-auth"],
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    client = None
    try:
        assert exporter.stderr is not None
        address = ""
        for line in exporter.stderr:
            if match := re.search(r"listening on (\S+)", line):
                address = match.group(1)
                break
        assert address, "exporter did not start"
        client = subprocess.Popen([sys.executable, "-c", CLIENT, address], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert client.stdout is not None
        assert "powered-on" in client.stdout.readline()
        started = qemu_pids() - before
        assert started, "QEMU did not start"
        client.kill()
        wait_until(lambda: not (qemu_pids() & started), 20, "the VM to stop after the client died")
        assert exporter.poll() is None, "the exporter must survive its client"
    finally:
        if client is not None:
            client.kill()
            client.wait()
        exporter.terminate()
        exporter.wait(timeout=20)
