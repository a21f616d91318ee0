"""Ours: driver calls through `client.call` / `client.streamingcall`.

In-process means what `serve(BenchDriver())` does (session on a blocking portal's event loop,
client in this thread); across processes means the exporter session runs in a child process
(`bench.servers jumpstarter`, i.e. `local_session`) and this process connects with
`client_from_path`. `python bench/bench_calls.py [--quick]` prints the figures.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import Settings, child_server, event_loop, interleaved_latency, repeated_rate, threaded_rate


@contextmanager
def remote_client(path: str, portal: Any) -> Iterator[Any]:
    """A sync root client connected to the exporter session at `path`, async parts on `portal`."""
    from jumpstarter.client.client import client_from_path

    with client_from_path(path, portal) as client:
        yield client


@contextmanager
def local_client(portal: Any) -> Iterator[Any]:
    """A sync root client of `BenchDriver` served in this process: what `serve()` does (session
    and client on one blocking portal), on the portal the rest of the benchmark shares."""
    from bench.drivers import BenchDriver
    from jumpstarter.client.client import client_from_path
    from jumpstarter.exporter.local import local_session

    with portal.wrap_async_context_manager(local_session(BenchDriver())) as path:
        with client_from_path(path, portal, unsafe=True) as client:
            yield client


def unary_calls(local: Any, remote: Any) -> dict[str, Callable[[], object]]:
    """Zero-argument callables making one driver call each: async and sync method, in-process
    (`local`) and across processes (`remote`)."""
    calls: dict[str, Callable[[], object]] = {}
    for where, client in (("inproc", local), ("remote", remote)):
        for method in ("echo_async", "echo_sync"):
            calls[f"{where}.{method}"] = functools.partial(client.call, method, 1)
    return calls


def streaming(client: Any, settings: Settings) -> float:
    """Items/s of streaming calls (an async generator) yielding `settings.stream_items` ints each."""
    count = settings.stream_items

    def run() -> int:
        received = sum(1 for _ in client.streamingcall("items", count))
        assert received == count, (received, count)
        return received

    return repeated_rate(run, settings.seconds)


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
    made = 0

    def quiet_call() -> None:
        client.call("echo_async", 1)

    def logged_call() -> None:
        nonlocal made
        client.call("echo_logged", 1)
        made += 1

    forwarded = logging.getLogger("exporter")
    counter = _Counter()
    saved = forwarded.level, forwarded.propagate
    forwarded.setLevel(logging.INFO)
    forwarded.propagate = False
    forwarded.addHandler(counter)
    try:
        with client.log_stream():
            found = interleaved_latency({"quiet": quiet_call, "logged": logged_call}, settings)
            quiet, logged = found["quiet"], found["logged"]
            deadline = time.monotonic() + 5
            while counter.count < made and time.monotonic() < deadline:
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
        "forwarded_fraction": counter.count / made,
    }


def measure(path: str, settings: Settings, portal: Any, *, paired: bool = True) -> dict[str, float]:
    """Every call figure, in-process and against the exporter session at `path`; `paired=False`
    leaves out the unary figures (run.py measures them alternating with the floor)."""
    figures: dict[str, float] = {}
    with local_client(portal) as local, remote_client(path, portal) as remote:
        if paired:
            calls = unary_calls(local, remote)
            for name, stats in interleaved_latency(calls, settings).items():
                figures.update({f"{name}.{key}": value for key, value in stats.items()})
            rate = threaded_rate(calls["remote.echo_async"], 16, settings.seconds)
            figures["remote.threads16_calls_per_s"] = rate
        for where, client in (("inproc", local), ("remote", remote)):
            figures[f"{where}.streaming_items_per_s"] = streaming(client, settings)
            for key, value in logging_cost(client, settings).items():
                figures[f"{where}.logging.{key}"] = value
    return figures


def main() -> None:
    """Print our call figures as JSON."""
    settings = Settings.quick() if "--quick" in sys.argv else Settings()
    with child_server("jumpstarter") as path, event_loop() as portal:
        figures = measure(path, settings, portal)
    json.dump(figures, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
