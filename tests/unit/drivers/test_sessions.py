"""The built-in drivers across many sessions: nothing leaks (file descriptors, threads)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from jumpstarter.common.utils import serve
from jumpstarter.driver import Driver
from jumpstarter_driver_composite.driver import Composite
from jumpstarter_driver_network.adapters import TcpPortforwardAdapter
from jumpstarter_driver_network.driver import TcpNetwork
from jumpstarter_driver_power.driver import MockPower, SyncMockPower
from jumpstarter_driver_shell.driver import Shell
from tests.unit.drivers.conftest import close_listening


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_forever() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve_forever, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        close_listening(listener)


def one_session(root: Driver) -> None:
    """Use every driver once: calls, a streaming call, a shell command, a forwarded connection."""
    with serve(root) as client:
        client.power.on()
        assert len(list(client.sync.read())) == 2
        assert client.shell.hi().stdout == "hi\n"
        with TcpPortforwardAdapter(client=client.tcp) as address, socket.create_connection(address) as conn:
            conn.sendall(b"x")
            assert conn.recv(1) == b"x"


def test_a_hundred_sessions_leak_no_fds_or_threads(echo_port: int) -> None:
    root = Composite(
        children={
            "power": MockPower(),
            "sync": SyncMockPower(),
            "shell": Shell(methods={"hi": "echo hi"}),
            "tcp": TcpNetwork(host="127.0.0.1", port=echo_port),
        }
    )
    one_session(root)  # first use imports modules and starts lazily created helpers
    fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
    for _ in range(100):
        one_session(root)
    # worker threads of earlier tests may still be winding down: allow them a moment
    deadline = time.monotonic() + 10
    while (
        len(os.listdir("/proc/self/fd")) > fds or threading.active_count() > threads
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(os.listdir("/proc/self/fd")) <= fds
    assert threading.active_count() <= threads
