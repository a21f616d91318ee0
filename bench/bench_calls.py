"""Ours: driver calls through `client.call` / `client.streamingcall`.

In-process means `serve(BenchDriver())` (server on the portal's event loop, client in this
thread); across processes means the exporter session runs in a child process
(`bench.servers jumpstarter`, i.e. `local_session`) and this process connects with
`client_from_path`. `python bench/bench_calls.py [--quick]` prints the figures.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import Settings, child_server, latency, threaded_rate


@contextmanager
def remote_client(path: str) -> Iterator[Any]:
    """A sync root client connected to the exporter session at `path`."""
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.client import client_from_path

    with start_blocking_portal("asyncio") as portal, client_from_path(path, portal) as client:
        yield client


@contextmanager
def local_client() -> Iterator[Any]:
    """A sync root client of `BenchDriver` served in this process."""
    from bench.drivers import BenchDriver
    from jumpstarter.common.utils import serve

    with serve(BenchDriver()) as client:
        yield client


def unary(client: Any, settings: Settings) -> dict[str, float]:
    """p50/p99 of an async and a sync driver method."""
    figures = {}
    for method in ("echo_async", "echo_sync"):
        for key, value in latency(lambda m=method: client.call(m, 1), settings).items():
            figures[f"{method}.{key}"] = value
    return figures


def streaming(client: Any, settings: Settings) -> float:
    """Items/s of a streaming call (async generator) yielding `settings.stream_items` ints."""
    count = settings.stream_items
    for _ in client.streamingcall("items", count):  # warm-up: one full call
        pass
    start = time.perf_counter()
    received = sum(1 for _ in client.streamingcall("items", count))
    elapsed = time.perf_counter() - start
    assert received == count, (received, count)
    return received / elapsed


class _Counter(logging.Handler):
    """Counts forwarded exporter records, proving the LogStream path really carried them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def logging_cost(client: Any, settings: Settings) -> dict[str, float]:
    """p50 of a method that logs at INFO per call vs its silent twin, with a LogStream subscriber
    relaying the records to a local handler."""
    forwarded = logging.getLogger("exporter")
    counter = _Counter()
    saved = forwarded.level, forwarded.propagate
    forwarded.setLevel(logging.INFO)
    forwarded.propagate = False
    forwarded.addHandler(counter)
    try:
        with client.log_stream():
            quiet = latency(lambda: client.call("echo_async", 1), settings)
            logged = latency(lambda: client.call("echo_logged", 1), settings)
            deadline = time.monotonic() + 5
            expected = settings.warmup + settings.calls
            while counter.count < expected and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        forwarded.removeHandler(counter)
        forwarded.setLevel(saved[0])
        forwarded.propagate = saved[1]
    return {
        "quiet_p50_us": quiet["p50_us"],
        "logged_p50_us": logged["p50_us"],
        "logged_p99_us": logged["p99_us"],
        "ratio": logged["p50_us"] / quiet["p50_us"],
        "forwarded_fraction": counter.count / expected,
    }


def measure(path: str, settings: Settings) -> dict[str, float]:
    """Every call figure: in-process, and against the exporter session at `path`."""
    figures: dict[str, float] = {}
    with local_client() as client:
        figures.update({f"inproc.{k}": v for k, v in unary(client, settings).items()})
        figures["inproc.streaming_items_per_s"] = streaming(client, settings)
        figures.update({f"inproc.logging.{k}": v for k, v in logging_cost(client, settings).items()})
    with remote_client(path) as client:
        figures.update({f"remote.{k}": v for k, v in unary(client, settings).items()})
        figures["remote.threads16_calls_per_s"] = threaded_rate(
            lambda: client.call("echo_async", 1), 16, settings.seconds
        )
        figures["remote.streaming_items_per_s"] = streaming(client, settings)
        figures.update({f"remote.logging.{k}": v for k, v in logging_cost(client, settings).items()})
    return figures


def main() -> None:
    """Print our call figures as JSON."""
    settings = Settings.quick() if "--quick" in sys.argv else Settings()
    with child_server("jumpstarter") as path:
        figures = measure(path, settings)
    json.dump(figures, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
