"""Throughput through a TCP port forward: `TcpPortforwardAdapter` -> driver stream -> `TcpNetwork`.

Three paths carry the same transfers between a sender and a target, both in a separate *peer*
process (so neither side of Jumpstarter shares its CPU time with the traffic generator):

* `direct`: the peer's sender connects straight to its own target (the floor: loopback TCP and
  the peer's own copying);
* `inproc`: through a port forward whose client and exporter share this process (`serve()`, as
  in upstream's measurement of ~244 MB/s upload);
* `remote`: through a port forward in this process to an exporter in a child process (the usual
  deployment: exporter and client are different processes, here on one machine).

Upload: the sender writes N bytes and half-closes; the clock stops when the target's byte count
comes back. Download: the target writes N bytes; the clock stops when the sender has them all.
MB/s are 10^6 bytes per second.

    python bench/bench_network.py [--quick]        # prints the figures as JSON
"""

from __future__ import annotations

import json
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import MIB, child_env

CHUNK = MIB
HEADER = struct.Struct("!cQ")  # mode (b"u" upload / b"d" download), byte count


# ---- the peer process: sender and target ------------------------------------------------------


def _target(conn: socket.socket) -> None:
    """One connection to the target: swallow and count an upload, or produce a download."""
    with conn:
        header = b""
        while len(header) < HEADER.size:
            header += conn.recv(HEADER.size - len(header))
        mode, size = HEADER.unpack(header)
        if mode == b"u":
            buffer = bytearray(CHUNK)
            total = 0
            while total < size and (n := conn.recv_into(buffer)):
                total += n
            conn.sendall(struct.pack("!Q", total))
        else:
            block = bytes(CHUNK)
            for start in range(0, size, CHUNK):
                conn.sendall(block[: min(CHUNK, size - start)])
            conn.shutdown(socket.SHUT_WR)


def _transfer(host: str, port: int, mode: bytes, size: int) -> float:
    """Seconds one upload or download of `size` bytes takes through host:port."""
    with socket.create_connection((host, port)) as conn:
        started = time.perf_counter()
        conn.sendall(HEADER.pack(mode, size))
        if mode == b"u":
            block = bytes(CHUNK)
            for start in range(0, size, CHUNK):
                conn.sendall(block[: min(CHUNK, size - start)])
            reply = b""
            while len(reply) < 8 and (more := conn.recv(8 - len(reply))):
                reply += more
            if struct.unpack("!Q", reply)[0] != size:
                raise RuntimeError(f"target counted {reply!r}, expected {size}")
        else:
            buffer = bytearray(CHUNK)
            total = 0
            while total < size and (n := conn.recv_into(buffer)):
                total += n
            if total != size:
                raise RuntimeError(f"received {total} of {size} bytes")
        return time.perf_counter() - started


def peer_main() -> None:
    """Serve as the target on a free port (printed first), then run `up|down HOST PORT SIZE`
    commands from stdin, answering each with the seconds it took."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=_target, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print(listener.getsockname()[1], flush=True)
    for line in sys.stdin:
        mode, host, port, size = line.split()
        print(_transfer(host, int(port), b"u" if mode == "up" else b"d", int(size)), flush=True)


class Peer:
    """The peer process, seen from the benchmark."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        assert proc.stdout is not None
        self.target_port = int(proc.stdout.readline())

    def mbps(self, mode: str, address: tuple[str, int], size: int) -> float:
        """MB/s of one transfer through `address`."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{mode} {address[0]} {address[1]} {size}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError("the peer process died")
        return size / float(answer) / 1e6


@contextmanager
def child(*argv: str) -> Iterator[subprocess.Popen[str]]:
    """`python -m bench.bench_network ARGV...`, stopped (stdin closed) at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_network", *argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=child_env(), text=True)
    try:
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- the exporter process ----------------------------------------------------------------------


def exporter_main(port: int) -> None:
    """Serve a `TcpNetwork` to 127.0.0.1:`port`; print the socket path; stop when stdin closes."""
    import anyio

    from jumpstarter.exporter.local import local_session
    from jumpstarter_driver_network.driver import TcpNetwork

    async def serve() -> None:
        async with local_session(TcpNetwork(host="127.0.0.1", port=port)) as path:
            print(path, flush=True)
            await anyio.to_thread.run_sync(sys.stdin.read)

    anyio.run(serve)


@contextmanager
def forwarded(client: Any) -> Iterator[tuple[str, int]]:
    """A TCP port forward to `client`'s stream."""
    from jumpstarter_driver_network.adapters import TcpPortforwardAdapter

    with TcpPortforwardAdapter(client=client) as address:
        yield address


@contextmanager
def inproc_forward(target_port: int) -> Iterator[tuple[str, int]]:
    """Port forward with client and exporter in this process."""
    from jumpstarter.common.utils import serve
    from jumpstarter_driver_network.driver import TcpNetwork

    with serve(TcpNetwork(host="127.0.0.1", port=target_port)) as client, forwarded(client) as address:
        yield address


@contextmanager
def remote_forward(target_port: int) -> Iterator[tuple[str, int]]:
    """Port forward in this process to an exporter in a child process."""
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.client import client_from_path

    with child("exporter", str(target_port)) as proc:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        with start_blocking_portal("asyncio") as portal, client_from_path(path, portal) as client:
            with forwarded(client) as address:
                yield address


def measure(size: int, rounds: int) -> dict[str, float]:
    """Median MB/s of uploads and downloads of `size` bytes over each path, `rounds` samples each
    (the paths alternate within a round, so a noisy spell hits all of them)."""
    samples: dict[str, list[float]] = {}
    with child("peer") as proc:
        peer = Peer(proc)
        direct = ("127.0.0.1", peer.target_port)
        paths: dict[str, Callable[[], Any]] = {
            "inproc": lambda: inproc_forward(peer.target_port),
            "remote": lambda: remote_forward(peer.target_port),
        }
        peer.mbps("up", direct, size)  # warm-up
        for _ in range(rounds):
            for mode in ("up", "down"):
                samples.setdefault(f"network.direct.{mode}load_MBps", []).append(peer.mbps(mode, direct, size))
            for name, opened in paths.items():
                with opened() as address:
                    peer.mbps("up", address, size // 8)  # warm-up
                    for mode in ("up", "down"):
                        samples.setdefault(f"network.{name}.{mode}load_MBps", []).append(
                            peer.mbps(mode, address, size))
    return {key: statistics.median(values) for key, values in samples.items()}


def main() -> None:
    """Print the figures as JSON."""
    quick = "--quick" in sys.argv
    figures = measure(size=(128 if quick else 512) * MIB, rounds=1 if quick else 3)
    json.dump(figures, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    if sys.argv[1:2] == ["peer"]:
        peer_main()
    elif sys.argv[1:2] == ["exporter"]:
        exporter_main(int(sys.argv[2]))
    else:
        main()
