"""PySerial against pyserial's loop:// and real pseudo-terminals: streams, pexpect, `j serial`."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import termios
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("serial")
pytest.importorskip("pexpect")
from pexpect.fdpexpect import fdspawn

from jumpstarter.common.utils import serve
from jumpstarter.errors import ConfigurationError
from jumpstarter_driver_pyserial.client import PySerialClient
from jumpstarter_driver_pyserial.console import EscapeDetector
from jumpstarter_driver_pyserial.driver import PySerial, SerialStream
from tests.unit.drivers.conftest import J, drivers_from_yaml, exporter_socket, j_process

DEADLINE = 10.0


class Pty:
    """A pseudo-terminal pair: the driver opens `path` (the serial port); the test plays the device
    on `master`."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        self.path = os.ttyname(self._slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read_until(self, wanted: bytes, deadline: float = DEADLINE) -> bytes:
        """Read from the device side until `wanted` has arrived (fails after `deadline` seconds)."""
        got = b""
        end = time.monotonic() + deadline
        while wanted not in got:
            left = end - time.monotonic()
            assert left > 0, f"timed out waiting for {wanted!r}; got {got!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                got += os.read(self.master, 65536)
        return got

    def close(self) -> None:
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def pty() -> Iterator[Pty]:
    pair = Pty()
    try:
        yield pair
    finally:
        pair.close()


def receive_exactly(stream, size: int) -> bytes:
    got = b""
    while len(got) < size:
        got += stream.receive(timeout=DEADLINE)
    return got


# ---- configuration --------------------------------------------------------------------------
def test_missing_device_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"url: serial port '/dev/ttyNOPE9' does not exist"):
        PySerial(url="/dev/ttyNOPE9")


def test_missing_device_in_exporter_config_names_field() -> None:
    with pytest.raises(ConfigurationError) as info:
        drivers_from_yaml("  serial:\n    type: PySerial\n    config:\n      url: /dev/ttyNOPE9\n")
    assert "export.serial" in str(info.value)
    assert "/dev/ttyNOPE9" in str(info.value)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"url": "bogus://x"}, "url"),
        ({"url": "loop://", "baudrate": 0}, "baudrate"),
        ({"url": "loop://", "parity": "X"}, "parity"),
        ({"url": "loop://", "bytesize": 9}, "bytesize"),
        ({"url": "loop://", "stopbits": 3}, "stopbits"),
        ({"url": "loop://", "cps": -1}, "cps"),
    ],
)
def test_bad_settings_name_the_field(config: dict, field: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"PySerial config {field}:"):
        PySerial(**config)


def test_port_appearing_later_fails_on_connect_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "ttyLATER")
    with serve(PySerial(url=missing, check_present=False)) as client:
        with pytest.raises(ConnectionError, match="ttyLATER"):
            with client.stream():
                pass


def test_exporter_config_loads_upstream_type_path() -> None:
    root = drivers_from_yaml(
        "  serial:\n    type: jumpstarter_driver_pyserial.driver.PySerial\n"
        "    config:\n      url: 'loop://'\n      baudrate: 9600\n"
    )
    serial = root.children["serial"]
    assert isinstance(serial, PySerial)
    assert serial.baudrate == 9600


# ---- streams --------------------------------------------------------------------------------
def test_loop_round_trip() -> None:
    data = bytes(range(256)) * 256  # 64 KiB, every byte value
    with serve(PySerial(url="loop://")) as client:
        assert isinstance(client, PySerialClient)
        with client.stream() as stream:
            stream.send(data)
            assert receive_exactly(stream, len(data)) == data


def test_pty_both_directions(pty: Pty) -> None:
    with serve(PySerial(url=pty.path, baudrate=9600)) as client, client.stream() as stream:
        pty.write(b"U-Boot 2024.01\r\n\xff\x00")
        assert receive_exactly(stream, 18) == b"U-Boot 2024.01\r\n\xff\x00"
        stream.send(b"printenv\r")
        assert pty.read_until(b"printenv\r") == b"printenv\r"


def test_open_stream_stays_open_until_close(pty: Pty) -> None:
    with serve(PySerial(url=pty.path)) as client:
        stream = client.open_stream()
        stream.send(b"ping")
        pty.read_until(b"ping")
        pty.write(b"pong")
        assert receive_exactly(stream, 4) == b"pong"
        client.close()


def test_device_gone_ends_the_stream(pty: Pty) -> None:
    with serve(PySerial(url=pty.path)) as client, client.stream() as stream:
        pty.write(b"bye")
        assert receive_exactly(stream, 3) == b"bye"
        pty.close()  # the other end of the line disappears
        # the driver raises ConnectionError("serial port ...: ..."); the exporter's stream pump
        # currently delivers it wrapped in an ExceptionGroup, so only "it fails" is checked here
        with pytest.raises(Exception):  # noqa: B017
            while True:
                stream.receive(timeout=DEADLINE)


def test_cps_paces_sending(pty: Pty) -> None:
    with serve(PySerial(url=pty.path, cps=200)) as client, client.stream() as stream:
        start = time.monotonic()
        stream.send(b"0123456789" * 2)
        pty.read_until(b"01234567890123456789")
        assert time.monotonic() - start >= 19 / 200


def _running_readers() -> int:
    """Threads currently inside a serial reader loop (idle pool workers do not count)."""
    code = SerialStream._read_loop.__code__
    return sum(
        any(frame.f_code is code for frame, _ in traceback.walk_stack(top))
        for top in sys._current_frames().values()
    )


def test_streams_release_threads_and_descriptors(pty: Pty) -> None:
    def sessions(count: int) -> None:
        for _ in range(count):
            with client.stream() as stream:
                stream.send(b"x")
        pty.read_until(b"x" * count)

    with serve(PySerial(url=pty.path)) as client:
        sessions(10)  # warm up: worker thread pools grow to their working size
        fds = len(os.listdir("/proc/self/fd"))
        sessions(40)
        deadline = time.monotonic() + DEADLINE
        while _running_readers() and time.monotonic() < deadline:
            time.sleep(0.01)  # a reader thread notices its stop within READ_POLL
        assert _running_readers() == 0
        assert len(os.listdir("/proc/self/fd")) <= fds


# ---- pexpect --------------------------------------------------------------------------------
GETTY = r"""
import os, subprocess, sys
out = sys.stdout.buffer
def line():
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(0, 1)
        if not chunk:
            sys.exit(0)
        data += chunk
    return data.strip()
out.write(b"\r\nDebian GNU/Linux 12 board ttyS0\r\n\r\nboard login: "); out.flush()
user = line()
out.write(b"Password: "); out.flush()
if line() != b"secret":
    out.write(b"\r\nLogin incorrect\r\n"); out.flush(); sys.exit(1)
while True:  # a minimal shell: prompt, run the line with sh -c, print its output
    out.write(b"root@board:~# "); out.flush()
    command = line()
    if command == b"exit":
        sys.exit(0)
    result = subprocess.run(["sh", "-c", command], stdin=subprocess.DEVNULL, capture_output=True)
    out.write((result.stdout + result.stderr).replace(b"\n", b"\r\n")); out.flush()
"""


def test_pexpect_login_flow(pty: Pty) -> None:
    with serve(PySerial(url=pty.path)) as client, client.pexpect(timeout=DEADLINE) as console:
        # the "device": a login prompt, then a real shell, on the other side of the line
        device = subprocess.Popen(
            [sys.executable, "-c", GETTY], stdin=pty.master, stdout=pty.master, stderr=pty.master,
            env={"PATH": os.environ["PATH"]}, start_new_session=True,
        )
        try:
            console.expect("login: ")
            console.sendline("root")
            console.expect("Password: ")
            console.sendline("secret")
            console.expect("# ")
            console.sendline("echo $((6 * 7))")
            console.expect(r"\b42\b")
            console.sendline("exit")
            assert device.wait(DEADLINE) == 0
        finally:
            device.kill()
            device.wait()


# ---- escape sequence ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("chunks", "sent", "leaves"),
    [
        ([b"ls\r"], b"ls\r", False),
        ([b"\x02\x02\x02"], b"", True),
        ([b"a\x02", b"\x02", b"\x02zz"], b"a", True),  # across reads; input after the sequence is dropped
        ([b"\x02x"], b"\x02x", False),  # a single Ctrl-B still reaches the device
        ([b"\x02\x02", b"y"], b"\x02\x02y", False),
        ([b"\x02\x02q\x02\x02"], b"\x02\x02q", False),  # the count restarts after another key
        ([b"\x02\x02q\x02\x02", b"\x02"], b"\x02\x02q", True),
    ],
)
def test_escape_detector(chunks: list[bytes], sent: bytes, leaves: bool) -> None:
    detector = EscapeDetector()
    out = b""
    left = False
    for chunk in chunks:
        forward, left = detector.feed(chunk)
        out += forward
        if left:
            break
    assert (out, left) == (sent, leaves)


# ---- j serial -------------------------------------------------------------------------------
def test_j_serial_pipe_copies_both_ways(pty: Pty) -> None:
    root = drivers_from_yaml(f"  serial:\n    type: PySerial\n    config:\n      url: {pty.path}\n")
    with exporter_socket(root) as host:
        proc = j_process(host, "serial", "pipe", stdin=subprocess.PIPE)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("uname\n")
            proc.stdin.close()
            pty.read_until(b"uname\n")
            pty.write(b"Linux\n")
            assert proc.stdout.readline() == "Linux\n"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(DEADLINE) == 130
        finally:
            proc.kill()
            proc.wait()


def test_j_serial_pipe_no_output_exits_at_end_of_input(pty: Pty, tmp_path: Path) -> None:
    root = drivers_from_yaml(f"  serial:\n    type: PySerial\n    config:\n      url: {pty.path}\n")
    commands = tmp_path / "commands.txt"
    commands.write_bytes(b"reboot\n")
    with exporter_socket(root) as host, commands.open("rb") as stdin:
        proc = j_process(host, "serial", "pipe", "--no-output", stdin=stdin)
        _, err = proc.communicate(timeout=DEADLINE * 3)
        assert proc.returncode == 0, err
        assert pty.read_until(b"reboot\n") == b"reboot\n"


def test_j_serial_start_console() -> None:
    if not Path(J).exists():
        pytest.skip(f"{J} is not installed")
    root = drivers_from_yaml("  serial:\n    type: PySerial\n    config:\n      url: 'loop://'\n")
    # `j` on a terminal of our own; started with subprocess, not pexpect.spawn, whose fork() in a
    # process running gRPC threads (the exporter) can break the child before it execs
    terminal, device = os.openpty()
    try:
        with exporter_socket(root) as host:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("JMP_", "JUMPSTARTER_"))}
            proc = subprocess.Popen([J, "serial", "start-console"], env={**env, "JUMPSTARTER_HOST": host},
                                    stdin=device, stdout=device, stderr=device, start_new_session=True)
            console = fdspawn(terminal, timeout=DEADLINE * 3)
            try:
                console.expect("Ctrl-B three times")
                assert not termios.tcgetattr(terminal)[3] & (termios.ECHO | termios.ICANON)  # raw mode
                console.send("hello loop")  # loop:// sends it straight back
                console.expect("hello loop")
                console.send("\x02\x02\x02")
                console.expect("Disconnected")
                assert proc.wait(DEADLINE) == 0
                restored = termios.tcgetattr(terminal)[3]
                assert restored & termios.ECHO and restored & termios.ICANON
            finally:
                proc.kill()
                proc.wait()
    finally:
        os.close(device)
        os.close(terminal)


def test_start_console_refuses_a_non_terminal(pty: Pty) -> None:
    root = drivers_from_yaml(f"  serial:\n    type: PySerial\n    config:\n      url: {pty.path}\n")
    with exporter_socket(root) as host:
        proc = j_process(host, "serial", "start-console")
        _, err = proc.communicate(timeout=DEADLINE * 3)
        assert proc.returncode != 0
        assert "needs a terminal" in err
