"""Ours: byte streams opened on `@exportstream` methods of a driver in another process.

`sink` swallows bytes and answers the total after end-of-input (so the clock stops only when
everything arrived); `loopback` sends every chunk back. Each is driven through the sync
`BlockingStream` (`client.stream`) and the async API (`client.stream_async`, on the client's
portal loop). `python bench/bench_streams.py [--quick]` prints the figures.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio

from bench.bench_calls import remote_client
from bench.harness import KIB, Settings, child_server, event_loop


def oneway_sync(client: Any, size: int, seconds: float) -> float:
    """Bytes/s delivered to the sink by `BlockingStream.send` of `size`-byte pieces for `seconds`."""
    piece = b"x" * size
    with client.stream("sink") as stream:
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            stream.send(piece)
        stream.send_eof()
        total = int(stream.receive(timeout=30))
        elapsed = time.perf_counter() - start
    return total / elapsed


def echo_sync(client: Any, size: int, seconds: float) -> float:
    """Bytes/s coming back from the loopback (counted once); a thread sends, this one receives."""
    piece = b"x" * size
    sent = [0]
    with client.stream("loopback") as stream:

        def sender() -> None:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                stream.send(piece)
                sent[0] += size
            stream.send_eof()

        start = time.perf_counter()
        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        received = sum(len(chunk) for chunk in stream)
        elapsed = time.perf_counter() - start
        thread.join()
    assert received == sent[0], (received, sent[0])
    return received / elapsed


async def oneway_async(client: Any, size: int, seconds: float) -> float:
    """`oneway_sync` through `stream_async`."""
    piece = b"x" * size
    async with client.stream_async("sink") as stream:
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            await stream.send(piece)
        await stream.send_eof()
        total = int(await stream.receive())
        elapsed = time.perf_counter() - start
    return total / elapsed


async def echo_async(client: Any, size: int, seconds: float) -> float:
    """`echo_sync` through `stream_async`, sender and receiver as two tasks."""
    piece = b"x" * size
    sent = received = 0
    async with client.stream_async("loopback") as stream:

        async def sender() -> None:
            nonlocal sent
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                await stream.send(piece)
                sent += size
            await stream.send_eof()

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            while True:
                try:
                    received += len(await stream.receive())
                except anyio.EndOfStream:
                    break
        elapsed = time.perf_counter() - start
    assert received == sent, (received, sent)
    return received / elapsed


def paired_streams(client: Any) -> dict[str, Callable[[float], float]]:
    """The figures compared with the floor, as `run(seconds) -> MB/s`: 64 KiB one way and 64 KiB
    echo, through the sync and the async API."""
    portal = client.portal
    return {
        "sync.oneway_64k_MBps": lambda seconds: oneway_sync(client, 64 * KIB, seconds) / 1e6,
        "async.oneway_64k_MBps": lambda seconds: portal.call(oneway_async, client, 64 * KIB, seconds) / 1e6,
        "sync.echo_64k_MBps": lambda seconds: echo_sync(client, 64 * KIB, seconds) / 1e6,
        "async.echo_64k_MBps": lambda seconds: portal.call(echo_async, client, 64 * KIB, seconds) / 1e6,
    }


def measure(path: str, settings: Settings, portal: Any, *, paired: bool = True) -> dict[str, float]:
    """MB/s of one-way 4 KiB sends, and (unless `paired=False`: run.py measures those alternating
    with the floor) of one-way 64 KiB sends and 64 KiB echo, sync and async."""
    seconds = settings.seconds
    figures: dict[str, float] = {}
    with remote_client(path, portal) as client:
        if paired:
            for name, run in paired_streams(client).items():
                figures[name] = run(seconds)
        figures["sync.oneway_4k_MBps"] = oneway_sync(client, 4 * KIB, seconds) / 1e6
        figures["async.oneway_4k_MBps"] = client.portal.call(oneway_async, client, 4 * KIB, seconds) / 1e6
    return figures


def main() -> None:
    """Print our byte-stream figures as JSON."""
    settings = Settings.quick() if "--quick" in sys.argv else Settings()
    with child_server("jumpstarter") as path, event_loop() as portal:
        figures = measure(path, settings, portal)
    json.dump(figures, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
