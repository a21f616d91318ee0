"""The demo: drive a virtual board exactly as you would drive hardware.

Power it on, wait for the shell on the serial console, run a command, fetch a page from its web
server through a port forward, flash a new disk image, power-cycle, and see the new content."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from jumpstarter_driver_network.adapters import TcpPortforwardAdapter

PROMPT = r"root@dut:[^#]*# "


def wait_for_shell(vm: Any, timeout: float = 60) -> Any:
    """Open the console and wait for the root prompt; returns the pexpect session context."""
    manager = vm.console.pexpect()
    console = manager.__enter__()
    start = time.monotonic()
    while True:
        console.sendline("")
        try:
            console.expect(PROMPT, timeout=2)
            break
        except Exception:
            if time.monotonic() - start > timeout:
                manager.__exit__(None, None, None)
                raise
            sys.stderr.write(f"\rbooting... {time.monotonic() - start:4.1f}s")
    sys.stderr.write(f"\rshell prompt after {time.monotonic() - start:.1f}s\n")
    return manager, console


def run(console: Any, command: str) -> str:
    """Run a shell command on the console and return its output (the echo and prompts removed)."""
    console.sendline(f"{command}; echo __done_$?")
    console.expect(r"__done_(\d+)", timeout=20)
    text = console.before.decode(errors="replace") if isinstance(console.before, bytes) else console.before
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")
    echoed = text.rfind("__done_$?")  # our own command line, echoed by the shell
    return text[text.find("\n", echoed) + 1 :] if echoed >= 0 else text


def test_power_on_and_shell(vm: Any) -> None:
    vm.power.on()
    manager, console = wait_for_shell(vm)
    try:
        assert "Linux" in run(console, "uname -s")
    finally:
        manager.__exit__(None, None, None)


def test_fetch_a_page_through_a_port_forward(vm: Any) -> None:
    with TcpPortforwardAdapter(client=vm.http) as (host, port):
        deadline = time.monotonic() + 30
        while True:  # httpd starts a moment after the shell
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/cgi-bin/info", timeout=5) as page:
                    body = page.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    assert "Linux" in body


@pytest.mark.skipif(shutil.which("mke2fs") is None, reason="needs mke2fs (apt-get install e2fsprogs)")
def test_flash_new_image_and_power_cycle(vm: Any, tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    payload.mkdir()
    stamp = f"flashed at {time.time():.0f}"
    (payload / "hello.txt").write_text(stamp + "\n")
    image = tmp_path / "disk.img"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(payload), str(image), "16M"], check=True)

    vm.power.off()
    vm.storage.flash(image, compression="zstd", progress=True)
    vm.power.on()
    manager, console = wait_for_shell(vm)
    try:
        assert stamp in run(console, "cat /mnt/disk/hello.txt")
    finally:
        manager.__exit__(None, None, None)
    vm.power.off()
