"""Network drivers and port-forwarding adapters against echo servers started by the tests."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest

from jumpstarter.common.utils import serve, serve_async
from jumpstarter_driver_composite.driver import Composite
from jumpstarter_driver_network.adapters import TcpPortforwardAdapter, UnixPortforwardAdapter
from jumpstarter_driver_network.client import NetworkClient
from jumpstarter_driver_network.driver import EchoNetwork, TcpNetwork, UdpNetwork, UnixNetwork
from tests.unit.drivers.conftest import close_listening, drivers_from_yaml, exporter_socket, j_process, run_j

DEADLINE = 30
MiB = 1 << 20


class EchoServer:
    """A threaded stream echo server on a listening socket (TCP or unix); closes with the test."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(MiB):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        close_listening(self.listener)


@pytest.fixture
def tcp_echo() -> Iterator[tuple[str, int]]:
    listener = socket.create_server(("127.0.0.1", 0))
    server = EchoServer(listener)
    try:
        yield listener.getsockname()[:2]
    finally:
        server.close()


@pytest.fixture
def unix_echo() -> Iterator[str]:
    directory = Path(os.environ.get("TMPDIR", "/tmp"))
    path = str(directory / f"jmp-echo-{os.getpid()}-{threading.get_ident()}.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(32)
    server = EchoServer(listener)
    try:
        yield path
    finally:
        server.close()
        os.unlink(path)


@pytest.fixture
def udp_echo() -> Iterator[tuple[str, int]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def echo() -> None:
        while True:
            try:
                data, peer = sock.recvfrom(65536)
                if peer is None:  # woken by the shutdown at the end of the test
                    return
                sock.sendto(data, peer)
            except OSError:
                return

    threading.Thread(target=echo, daemon=True).start()
    try:
        yield sock.getsockname()[:2]
    finally:
        close_listening(sock)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def echo_round_trip(address: Any, data: bytes, family: int = socket.AF_INET) -> bytes:
    """Send `data` to a stream echo at `address`, half-close, and return everything that came back."""
    with socket.socket(family, socket.SOCK_STREAM) as conn:
        conn.settimeout(DEADLINE)
        conn.connect(address)
        sender = threading.Thread(target=lambda: (conn.sendall(data), conn.shutdown(socket.SHUT_WR)))
        sender.start()
        received = bytearray()
        while chunk := conn.recv(MiB):
            received += chunk
        sender.join(DEADLINE)
    return bytes(received)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- the drivers' own streams --------------------------------------------------------------


def test_tcp_stream_carries_data_intact(tcp_echo: tuple[str, int]) -> None:
    data = os.urandom(8 * MiB)
    with serve(TcpNetwork(host=tcp_echo[0], port=tcp_echo[1])) as client:
        assert isinstance(client, NetworkClient)
        with client.stream() as stream:
            sender = threading.Thread(target=lambda: ([stream.send(data[i:i + MiB]) for i in range(0, len(data), MiB)],
                                                      stream.send_eof()))
            sender.start()
            received = b"".join(stream)
            sender.join(DEADLINE)
    assert digest(received) == digest(data)


def test_udp_stream_keeps_datagrams(udp_echo: tuple[str, int]) -> None:
    with serve(UdpNetwork(host=udp_echo[0], port=udp_echo[1])) as client, client.stream() as stream:
        for size in (1, 512, 60000):
            datagram = os.urandom(size)
            stream.send(datagram)
            assert stream.receive(timeout=DEADLINE) == datagram


def test_unix_stream(unix_echo: str) -> None:
    with serve(UnixNetwork(path=unix_echo)) as client, client.stream() as stream:
        stream.send(b"over a unix socket")
        stream.send_eof()
        assert b"".join(stream) == b"over a unix socket"


def test_echo_network() -> None:
    with serve(EchoNetwork()) as client, client.stream() as stream:
        stream.send(b"ping")
        assert stream.receive(timeout=DEADLINE) == b"ping"


def test_unreachable_endpoints_give_clear_errors(tmp_path: Path) -> None:
    port = closed_port()
    root = Composite(children={"tcp": TcpNetwork(host="127.0.0.1", port=port),
                               "unix": UnixNetwork(path=str(tmp_path / "nobody-home.sock"))})
    with serve(root) as client:
        with pytest.raises(ConnectionRefusedError, match=f"cannot connect to tcp 127.0.0.1:{port}"):
            with client.tcp.stream():
                pytest.fail("the stream must not open")
        with pytest.raises(ConnectionError, match=r"cannot connect to unix socket .*nobody-home\.sock"):
            with client.unix.stream():
                pytest.fail("the stream must not open")


@pytest.mark.parametrize(
    ("cls", "config", "error", "needle"),
    [
        (TcpNetwork, {"host": "127.0.0.1", "port": "http"}, TypeError, "port"),
        (TcpNetwork, {"host": "127.0.0.1", "port": 70000}, ValueError, "port"),
        (UdpNetwork, {"host": "", "port": 53}, TypeError, "host"),
        (UnixNetwork, {"path": ""}, TypeError, "path"),
    ],
)
def test_config_errors_name_the_field(cls: Any, config: dict[str, Any], error: type[Exception], needle: str) -> None:
    with pytest.raises(error, match=f"{cls.__name__} config {needle}"):
        cls(**config)


# ---- port forwarding -----------------------------------------------------------------------


def test_tcp_portforward_keeps_data_intact(tcp_echo: tuple[str, int]) -> None:
    data = os.urandom(16 * MiB)
    with serve(TcpNetwork(host=tcp_echo[0], port=tcp_echo[1])) as client:
        with TcpPortforwardAdapter(client=client) as (host, port):
            assert host == "127.0.0.1"
            assert digest(echo_round_trip((host, port), data)) == digest(data)


def test_concurrent_forwarded_connections_do_not_interfere(tcp_echo: tuple[str, int]) -> None:
    payloads = [os.urandom(256 * 1024 + i * 4099) for i in range(20)]
    barrier = threading.Barrier(len(payloads))

    def one(index: int, address: tuple[str, int]) -> str:
        barrier.wait(DEADLINE)  # all twenty connections run at the same time
        return digest(echo_round_trip(address, payloads[index]))

    with serve(TcpNetwork(host=tcp_echo[0], port=tcp_echo[1])) as client:
        with TcpPortforwardAdapter(client=client) as address, ThreadPoolExecutor(len(payloads)) as pool:
            results = list(pool.map(one, range(len(payloads)), [address] * len(payloads)))
    assert results == [digest(p) for p in payloads]


def test_a_stalled_forwarded_connection_does_not_block_others(tcp_echo: tuple[str, int]) -> None:
    with serve(TcpNetwork(host=tcp_echo[0], port=tcp_echo[1])) as client:
        with TcpPortforwardAdapter(client=client) as address:
            with socket.create_connection(address, timeout=DEADLINE) as stalled:
                stalled.sendall(b"x" * MiB)  # and never reads the echo
                assert echo_round_trip(address, b"still flowing") == b"still flowing"


def test_forward_to_a_closed_port_closes_the_local_connection() -> None:
    with serve(TcpNetwork(host="127.0.0.1", port=closed_port())) as client:
        with TcpPortforwardAdapter(client=client) as address:
            for _ in range(2):  # the listener survives the failure
                with socket.create_connection(address, timeout=DEADLINE) as conn:
                    try:
                        assert conn.recv(1) == b""
                    except ConnectionResetError:
                        pass


def test_adapter_stops_listening_when_closed(tcp_echo: tuple[str, int]) -> None:
    with serve(TcpNetwork(host=tcp_echo[0], port=tcp_echo[1])) as client:
        with TcpPortforwardAdapter(client=client) as address:
            assert echo_round_trip(address, b"a") == b"a"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=DEADLINE).close()


def test_unix_portforward(unix_echo: str, tmp_path: Path) -> None:
    data = os.urandom(2 * MiB)
    with serve(UnixNetwork(path=unix_echo)) as client:
        with UnixPortforwardAdapter(client=client) as path:
            assert digest(echo_round_trip(path, data, socket.AF_UNIX)) == digest(data)
        assert not os.path.exists(path)
        chosen = str(tmp_path / "fwd.sock")
        with UnixPortforwardAdapter(client=client, path=chosen) as path:
            assert path == chosen
            assert echo_round_trip(path, b"chosen", socket.AF_UNIX) == b"chosen"


@pytest.mark.anyio
async def test_adapters_in_async_code(tcp_echo: tuple[str, int]) -> None:
    async with serve_async(TcpNetwork(host=tcp_echo[0], port=tcp_echo[1])) as client:
        async with TcpPortforwardAdapter(client=client) as (host, port):
            with anyio.fail_after(DEADLINE):
                async with await anyio.connect_tcp(host, port) as conn:
                    await conn.send(b"async")
                    await conn.send_eof()
                    assert await conn.receive() == b"async"
        with pytest.raises(RuntimeError, match="use `async with`"):
            with TcpPortforwardAdapter(client=client):
                pass


def test_upstream_type_strings_load(tcp_echo: tuple[str, int]) -> None:
    root = drivers_from_yaml(
        f"  tcp:\n    type: jumpstarter_driver_network.driver.TcpNetwork\n"
        f"    config: {{host: {tcp_echo[0]}, port: {tcp_echo[1]}}}\n"
        f"  echo:\n    type: EchoNetwork\n"
    )
    with serve(root) as client, TcpPortforwardAdapter(client=client.tcp) as address:
        assert echo_round_trip(address, b"configured") == b"configured"


# ---- j -------------------------------------------------------------------------------------


def test_j_forward_ends_when_the_connection_closes(tcp_echo: tuple[str, int],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Inside `jmp shell`, `j` commands run on a thread of the shell process, where Ctrl-C never
    arrives: a forward must not keep the shell from closing its connection and exiting."""
    codes: list[int] = []
    with serve(Composite(children={"tcp": TcpNetwork(host=tcp_echo[0], port=tcp_echo[1])})) as root:
        command = threading.Thread(target=lambda: codes.append(run_j(root, "tcp", "forward")))
        command.start()
        printed = ""
        deadline = time.monotonic() + DEADLINE
        while ":" not in printed:
            assert time.monotonic() < deadline, "j tcp forward printed no address"
            printed += capsys.readouterr().out
            time.sleep(0.01)
        host, port = printed.strip().rsplit(":", 1)
        assert echo_round_trip((host, int(port)), b"from a thread") == b"from a thread"
    command.join(DEADLINE)
    assert codes == [0]


def test_j_forward_and_connect(tcp_echo: tuple[str, int], tmp_path: Path) -> None:
    root = Composite(children={"tcp": TcpNetwork(host=tcp_echo[0], port=tcp_echo[1])})
    with exporter_socket(root) as host:
        connect = j_process(host, "tcp", "connect", stdin=subprocess.PIPE)
        out, err = connect.communicate("through j connect", timeout=DEADLINE)
        assert (connect.returncode, out) == (0, "through j connect"), err

        forward = j_process(host, "tcp", "forward")
        forward_unix = j_process(host, "tcp", "forward-unix", str(tmp_path / "j.sock"))
        try:
            assert forward.stdout is not None and forward_unix.stdout is not None
            bound_host, bound_port = forward.stdout.readline().strip().rsplit(":", 1)
            assert echo_round_trip((bound_host, int(bound_port)), b"through j forward") == b"through j forward"
            path = forward_unix.stdout.readline().strip()
            assert echo_round_trip(path, b"through a unix socket", socket.AF_UNIX) == b"through a unix socket"
        finally:
            for process in (forward, forward_unix):
                process.send_signal(signal.SIGINT)
        for process in (forward, forward_unix):
            _, err = process.communicate(timeout=DEADLINE)
            assert process.returncode == 130, err
            assert "Traceback" not in err
