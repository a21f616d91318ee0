"""Getting a lease, from a client's point of view: how long from asking to knowing it is Ready.

A controller (`jmp controller run`) and one controlled exporter (`bench_router.distributed`); the
client side runs the library code `jmp shell -l` and the pytest plugin run (`ControllerSession`,
`wait_ready`) on the loop `jmp shell` uses. Figures (milliseconds, p50 and p99):

* `free`: with the exporter free, CreateLease called -> `wait_ready` returns (the lease is Ready
  and the client knows it: CreateLease plus the first event of the lease's watch stream). Target
  p99 <= 50 ms (upstream's client polls every 5 s).
* `create_rpc`: the CreateLease call alone, as the floor of `free` (the controller grants a free
  exporter before it answers).
* `handover`: a lease waiting behind another one: its holder's release called -> the waiter's
  `wait_ready` returns (release, the exporter ending its session and reporting Available, the
  grant pushed to the waiter).

Between samples the client waits until the exporter reports Available again, so that every
`free` sample starts with a free exporter (the floor shown next to `free` in the table is
`create_rpc`). `python bench/bench_lease.py [--quick]` prints JSON; `python bench/run.py lease`
prints the table rows (`ROWS`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import percentile
from bench.targets import Row

SELECTOR = "bench=1"
#: ExporterStatus.AVAILABLE on the wire
AVAILABLE = 2


#: (free samples, handover samples) of a full run; a quick one takes a quarter as many
SAMPLES = (200, 60)


async def _until_available(session: Any, exporter: str, seconds: float = 30.0) -> None:
    """Wait until the exporter reports Available (it does after each lease's session has ended)."""
    from jumpstarter.protocol.client.v1 import client_pb2

    request = client_pb2.GetExporterRequest(name=f"namespaces/{session.namespace}/exporters/{exporter}")
    deadline = time.monotonic() + seconds
    while (await session.call(session.clients().GetExporter, request)).status != AVAILABLE:
        if time.monotonic() > deadline:
            raise RuntimeError(f"exporter {exporter} not available after {seconds:g}s")
        await asyncio.sleep(0.002)


async def _sample(config_path: Path, free: int, handover: int) -> dict[str, list[float]]:
    from jumpstarter.client.lease import ControllerSession, wait_ready
    from jumpstarter.config.client import ClientConfig

    session = ControllerSession(ClientConfig.from_file(config_path))
    found: dict[str, list[float]] = {"free": [], "create_rpc": [], "handover": []}
    try:
        exporter = "bench"
        await _until_available(session, exporter)
        for _ in range(free):
            began = time.perf_counter()
            created = await session.create_lease(SELECTOR, 600)
            answered = time.perf_counter()
            name = created.name.rsplit("/", 1)[-1]
            ready = await wait_ready(session, name, lambda _: None, 30)
            done = time.perf_counter()
            found["free"].append((done - began) * 1000)
            found["create_rpc"].append((answered - began) * 1000)
            await session.release_lease(name)
            await _until_available(session, ready.exporter)
        queued = asyncio.Event()
        for _ in range(handover):
            holder = (await session.create_lease(SELECTOR, 600)).name.rsplit("/", 1)[-1]
            waiting = (await session.create_lease(SELECTOR, 600)).name.rsplit("/", 1)[-1]
            queued.clear()
            waiter = asyncio.ensure_future(wait_ready(session, waiting, lambda _: queued.set(), 30))
            await asyncio.wait_for(queued.wait(), 30)  # its watch stream is open
            began = time.perf_counter()
            await session.release_lease(holder)
            await waiter
            found["handover"].append((time.perf_counter() - began) * 1000)
            await session.release_lease(waiting)
            await _until_available(session, exporter)
    finally:
        await session.close()
    return found


def measure(quick: bool = False) -> dict[str, float]:
    """p50/p99/max milliseconds of each figure (keys `lease.free.p50_ms`, `lease.free.p99_ms`, ...)."""
    from bench.bench_router import distributed
    from jumpstarter.streams import loops

    free, handover = (n // 4 for n in SAMPLES) if quick else SAMPLES
    with tempfile.TemporaryDirectory() as tmp, distributed(Path(tmp)) as (client_config, _):
        found = loops.run(_sample(client_config, free, handover))
    figures = {}
    for name, values in found.items():
        figures[f"lease.{name}.p50_ms"] = percentile(values, 50)
        figures[f"lease.{name}.p99_ms"] = percentile(values, 99)
        figures[f"lease.{name}.max_ms"] = max(values)
    return figures


ROWS = [
    Row("lease request -> Ready known to the client, free exporter, p50", "lease.free.p50_ms",
        "lease.create_rpc.p50_ms", "ms", "info"),
    Row("lease request -> Ready known to the client, free exporter, p99", "lease.free.p99_ms",
        "lease.create_rpc.p99_ms", "ms", "value", "<=", 50),
    Row("queued lease: holder's release -> the waiter knows it is Ready, p50", "lease.handover.p50_ms",
        "", "ms", "info"),
    Row("queued lease: holder's release -> the waiter knows it is Ready, p99", "lease.handover.p99_ms",
        "", "ms", "info"),
]


def main() -> None:
    """Measure and print JSON."""
    json.dump(measure(quick="--quick" in sys.argv), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
