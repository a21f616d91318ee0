"""What every benchmark script shares: run settings, statistics, timing loops and child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The repository root, put on PYTHONPATH of child processes so they can import `bench`.
ROOT = Path(__file__).resolve().parents[1]
#: Sizes used by the byte-stream figures.
KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    """How long each measurement runs; `quick()` trades precision for a ~20 s total."""

    calls: int = 2000  # unary calls per latency sample
    warmup: int = 200  # unary calls discarded before each latency sample
    seconds: float = 1.0  # duration of each throughput sample
    stream_items: int = 5_000  # items per streaming call (calls repeat for `seconds`)
    startup_runs: int = 5  # fresh processes per startup figure

    @classmethod
    def quick(cls) -> Settings:
        """Short samples for a smoke run."""
        return cls(calls=1000, warmup=100, seconds=0.5, stream_items=2_000, startup_runs=3)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    """The middle value (lower median for even counts, so it is always a measured value)."""
    return percentile(values, 50)


def interleaved_latency(
    calls: dict[str, Callable[[], object]], settings: Settings, blocks: int = 10, settle: int = 3
) -> dict[str, dict[str, float]]:
    """p50/p99 (microseconds) of each named call, `settings.calls` samples each, taken in blocks
    that alternate between the calls (rotating which goes first), so a slow spell of this noisy
    machine hits every call alike and their ratios stay meaningful.

    The first `settle` calls of each block are not measured: the first call on a channel that sat
    idle while the others ran is slower (gRPC's pollers back off), which is an artefact of the
    alternation, not a tail a steady caller sees."""
    for call in calls.values():
        for _ in range(settings.warmup):
            call()
    clock = time.perf_counter_ns
    names = list(calls)
    samples: dict[str, list[int]] = {name: [] for name in names}
    per_block = max(1, settings.calls // blocks)
    for block in range(blocks):
        shift = block % len(names)
        for name in names[shift:] + names[:shift]:
            call, out = calls[name], samples[name]
            for _ in range(settle):
                call()
            for _ in range(per_block):
                start = clock()
                call()
                out.append(clock() - start)
    result = {}
    for name, taken in samples.items():
        micros = [ns / 1000 for ns in taken]
        result[name] = {"p50_us": percentile(micros, 50), "p99_us": percentile(micros, 99)}
    return result


def repeated_rate(run: Callable[[], int], seconds: float) -> float:
    """Items/s of `run()` (which returns how many items it received), repeated until `seconds`
    have passed, after one unmeasured run."""
    run()
    total = 0
    start = time.perf_counter()
    while True:
        total += run()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return total / elapsed


def threaded_rate(call: Callable[[], object], threads: int, seconds: float) -> float:
    """Calls per second completed by `threads` threads each calling `call()` in a loop."""
    done, elapsed = _threaded_run(call, threads, seconds)
    return done / elapsed


def interleaved_rate(
    calls: dict[str, Callable[[], object]], threads: int, seconds: float, slices: int = 4
) -> dict[str, float]:
    """`threaded_rate` of each named call over `seconds` in total, run as alternating slices
    (rotating which goes first) so that every call sees the same machine load."""
    names = list(calls)
    done = dict.fromkeys(names, 0)
    spent = dict.fromkeys(names, 0.0)
    for index in range(slices):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            count, elapsed = _threaded_run(calls[name], threads, seconds / slices)
            done[name] += count
            spent[name] += elapsed
    return {name: done[name] / spent[name] for name in names}


def interleaved_runs(
    runs: dict[str, Callable[[float], float]], seconds: float, slices: int = 2
) -> dict[str, float]:
    """Mean rate of each named `run(duration)` (which measures for `duration` seconds and returns
    a rate) over `slices` alternating slices of `seconds / slices` each, rotating which goes first."""
    names = list(runs)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for index in range(slices):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(runs[name](seconds / slices))
    return {name: sum(found) / len(found) for name, found in rates.items()}


def _threaded_run(call: Callable[[], object], threads: int, seconds: float) -> tuple[int, float]:
    for _ in range(20):
        call()
    counts = [0] * threads
    start_gate = threading.Barrier(threads + 1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        start_gate.wait()
        done = 0
        try:
            while not stop.is_set():
                call()
                done += 1
        except BaseException as exc:  # surfaced by the caller: a failing call is not a measurement
            errors.append(exc)
        counts[index] = done

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return sum(counts), elapsed


@contextmanager
def event_loop() -> Iterator[Any]:
    """The one event loop (as an anyio blocking portal) for all grpc.aio work of a measuring
    process: in-process servers, the clients' async channels, the bare aio clients.

    grpc.aio delivers completions through one process-wide queue that every loop using it
    watches, and hands events for another loop over with `call_soon_threadsafe`; with several
    such loops in a process each RPC wakes all of them and may take an extra thread hop: two
    extra idle loops slowed our in-process calls by 15-50 % before everything shared one loop.
    A test process using `serve()` has exactly one such loop, which is what this reproduces."""
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal("asyncio") as portal:
        yield portal


def child_env() -> dict[str, str]:
    """Environment for child Python processes: `bench` importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def child_server(kind: str) -> Iterator[str]:
    """Start `python -m bench.servers <kind>` and yield the unix socket path it prints.

    The child serves until its stdin closes, so it never outlives us by more than a moment."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.servers", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("/"):
            raise RuntimeError(f"bench server {kind!r} failed to start (printed {line!r})")
        yield line
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
