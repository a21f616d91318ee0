"""The controller at scale: 1,000 connected exporters and 200 clients leasing and releasing at once.

A real controller (`jmp controller run`), 1,000 exporter and 200 client identities made through
the admin API, the exporters simulated in 4 processes (250 each, real `ControllerService` streams:
`scale_peers.py`) and the clients in 2 (100 each, the CLI's own lease code). Each client loops:
lease by selector, wait for Ready, hold, release, pause. The selector mix makes contention: most
requests take any exporter, some one of 50 groups of 20, some one of 4 racks of 3 (these queue).

Figures:
* free-exporter latency: request -> Ready seen by the client (CreateLease + GetLease), for leases
  granted at once (CreateLease already answered Ready);
* grant latency, every lease: from the moment it could be granted (its request, or when the
  exporter it got reported itself free again, whichever is later) to the exporter receiving the
  assignment on its Status stream. Time spent waiting while nothing matching was free is queueing,
  not latency, and is reported apart (queued request -> Ready, client side, 0.2 s polling);
* leases/s, controller RSS (idle, after the identities, after connecting 1,000, peak) and its CPU.
Checks: no exporter was ever assigned a lease while holding another (its own Status stream log,
and overlapping begin/end intervals), every lease a client created ended Ready-then-released in
the controller's database with the exporter the client saw, none left active, none failed.

    python bench/bench_scale.py [--quick] [--saturate]   # prints JSON
    python bench/run.py scale [--quick]        # the same, as rows of the results table
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import child_env, percentile
from bench.targets import Row

JMP = str(Path(sys.executable).parent / "jmp")
RAW = Path(__file__).resolve().parent / "out" / "scale-raw.json"
EXPORTERS, EXPORTER_PROCESSES = 1000, 4
CLIENTS, CLIENT_PROCESSES = 200, 2
GROUPS, RACKS, RACK_SIZE = 50, 4, 3
MIX = {"rack": 0.1, "group": 0.3}  # the rest: any exporter
#: How long a client holds each lease and pauses before the next (seconds, uniform): about 22
#: leases/s offered in all (a busy lab sees that many in an hour). `--saturate`: as fast as they can.
PACE = {"hold": (4.0, 10.0), "pause": (1.0, 3.0)}
SATURATE = {"hold": (0.05, 0.2), "pause": (0.0, 0.1)}
IDLE_WINDOW = 5.0  # seconds the controller's CPU is measured with every exporter connected and no lease


@dataclass(slots=True)
class Controller:
    """A running `jmp controller run`."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    endpoint: str
    ca: str
    admin_token: str


@contextmanager
def controller(tmp: Path) -> Iterator[Controller]:
    """A controller on a free loopback port, its log in `tmp/controller.log`; SIGTERM at exit."""
    from jumpstarter.config.client import ClientConfig

    log, data_dir = tmp / "controller.log", tmp / "data"
    with log.open("wb") as stderr:
        proc = subprocess.Popen([JMP, "controller", "run", "--address", "127.0.0.1:0", "--data-dir", str(data_dir)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=child_env())
    try:
        deadline = time.monotonic() + 60
        while not re.search(r"admin credential", log.read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"controller did not start:\n{log.read_text()}")
            time.sleep(0.05)
        port = re.search(r"controller listening on [\d.]+:(\d+)", log.read_text())
        assert port is not None
        admin = ClientConfig.from_file(data_dir / "admin.yaml")
        yield Controller(proc, data_dir, f"127.0.0.1:{port.group(1)}", admin.tls.ca or "", admin.token or "")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def exporter_labels(index: int) -> dict[str, str]:
    """Labels of exporter `index`: all in `pool=bench`, 50 groups, the first 12 also in 4 racks."""
    labels = {"pool": "bench", "group": f"g{index % GROUPS}"}
    if index < RACKS * RACK_SIZE:
        labels["rack"] = f"r{index % RACKS}"
    return labels


async def create_identities(ctl: Controller) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every exporter and client through AdminService.CreateIdentity, 32 calls in flight."""
    import grpc

    from jumpstarter.protocol.admin.v1 import admin_pb2, admin_pb2_grpc

    wanted = [("Exporter", f"exp{i:04d}", exporter_labels(i)) for i in range(EXPORTERS)]
    wanted += [("Client", f"client{i:03d}", {}) for i in range(CLIENTS)]
    metadata = (("authorization", f"Bearer {ctl.admin_token}"),)
    credentials = grpc.ssl_channel_credentials(root_certificates=ctl.ca.encode())
    gate = asyncio.Semaphore(32)
    async with grpc.aio.secure_channel(ctl.endpoint, credentials) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)

        async def create(kind: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
            async with gate:
                ref = admin_pb2.IdentityRef(kind=kind, namespace="default", name=name)
                answer = await stub.CreateIdentity(admin_pb2.CreateIdentityRequest(ref=ref, labels=labels),
                                                   metadata=metadata, timeout=60)
            return {"kind": kind, "name": name, "labels": labels, "token": answer.token}

        made = await asyncio.gather(*(create(*w) for w in wanted))
    return [m for m in made if m["kind"] == "Exporter"], [m for m in made if m["kind"] == "Client"]


@dataclass(slots=True)
class Peers:
    """A `scale_peers` worker process."""

    proc: subprocess.Popen[str]
    result: Path
    log: Path

    def expect(self, word: str, seconds: float) -> None:
        """Wait for the worker to print `word` (it failed otherwise)."""
        assert self.proc.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(seconds)
        if not box or box[0].strip() != word:
            tail = self.log.read_text()[-3000:]
            raise RuntimeError(f"{self.log.stem} did not print {word!r} within {seconds:g}s (got {box!r}):\n{tail}")


def start_peers(tmp: Path, kind: str, index: int, spec: dict[str, Any]) -> Peers:
    """Start one worker with its share of peers."""
    spec_path, result = tmp / f"{kind}{index}.json", tmp / f"{kind}{index}-result.json"
    spec_path.write_text(json.dumps(spec))
    with (tmp / f"{kind}{index}.log").open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "bench.scale_peers", kind, str(spec_path), str(result)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                env=child_env())
    return Peers(proc, result, tmp / f"{kind}{index}.log")


class Sampler:
    """Samples the controller's RSS every 50 ms (peak) and reads its CPU time."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        """Resident bytes now."""
        return int(self.process.memory_info().rss)

    def cpu(self) -> float:
        """CPU seconds used so far."""
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.rss())

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """`items` in `parts` interleaved shares."""
    return [items[i::parts] for i in range(parts)]


def run(tmp: Path, seconds: float, pace: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Set everything up, run the load for `seconds`, tear down; the raw material for `analyse`."""
    with controller(tmp) as ctl, ExitStack() as stack:
        sampler = Sampler(ctl.proc.pid)
        stack.callback(sampler.stop)
        memory = {"idle": sampler.rss()}
        began = time.perf_counter()
        exporters, clients = asyncio.run(create_identities(ctl))
        setup = {"identities_s": time.perf_counter() - began}
        memory["identities"] = sampler.rss()
        base = {"endpoint": ctl.endpoint, "ca": ctl.ca}
        workers = []
        began = time.perf_counter()
        for index, share in enumerate(split(exporters, EXPORTER_PROCESSES)):
            workers.append(start_peers(tmp, "exporters", index, base | {"peers": share}))
        for worker in workers:
            stack.callback(_finish, worker)
        for worker in workers:
            worker.expect("ready", 180)
        setup["connect_s"] = time.perf_counter() - began
        memory["connected"] = sampler.rss()
        idle_cpu = sampler.cpu()
        time.sleep(IDLE_WINDOW)  # a measurement window, not a wait for readiness
        setup["idle_cpu_share"] = (sampler.cpu() - idle_cpu) / IDLE_WINDOW / (os.cpu_count() or 1)
        client_spec = base | pace | {"seconds": seconds, "mix": MIX, "groups": GROUPS, "racks": RACKS}
        users = [start_peers(tmp, "clients", i, client_spec | {"peers": share})
                 for i, share in enumerate(split(clients, CLIENT_PROCESSES))]
        for user in users:
            stack.callback(_finish, user)
        for user in users:
            user.expect("ready", 60)
        peers = [p.proc.pid for p in (*workers, *users)]
        cpu_before, peers_before, busy_before = sampler.cpu(), cpu_seconds(peers), busy_seconds()
        load_began = time.time()
        sampler.peak = sampler.rss()
        for user in users:
            assert user.proc.stdin is not None
            user.proc.stdin.write("go\n")
            user.proc.stdin.flush()
        for user in users:
            user.expect("done", seconds + 2 * 120 + 60)
        load_ended = time.time()
        cpu = {"controller": sampler.cpu() - cpu_before, "peers": cpu_seconds(peers) - peers_before,
               "machine": busy_seconds() - busy_before}
        memory["peak"] = sampler.peak
        for worker in workers:
            assert worker.proc.stdin is not None
            worker.proc.stdin.close()
        for worker in workers:
            worker.expect("done", 60)
        records = [r for user in users for r in json.loads(user.result.read_text())]
        logs = [log for worker in workers for log in json.loads(worker.result.read_text())]
        data_dir = ctl.data_dir
    return {"records": records, "logs": logs, "memory": memory, "setup": setup, "cpu_s": cpu,
            "window": (load_began, load_ended), "stored": stored_leases(data_dir)}


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by processes `pids`."""
    import psutil

    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (every process)."""
    import psutil

    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _finish(peers: Peers) -> None:
    if peers.proc.poll() is None:
        peers.proc.kill()
    peers.proc.wait()


def stored_leases(data_dir: Path) -> dict[str, dict[str, Any]]:
    """The controller's own record of every lease (after it stopped), and the database's health."""
    db = sqlite3.connect(f"file:{data_dir / 'controller.db'}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT name, phase, exporter, reason FROM leases").fetchall()
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {row["name"]: dict(row) for row in rows}
    finally:
        db.close()


def analyse(raw: dict[str, Any]) -> dict[str, Any]:
    """Latency percentiles, rates, memory and the correctness checks."""
    records, logs, stored = raw["records"], raw["logs"], raw["stored"]
    granted_at: dict[str, tuple[float, str]] = {}
    freed_before: dict[str, list[float]] = {}
    double = [v for log in logs for v in log["violations"]]
    for log in logs:
        freed_before[log["name"]] = sorted(log["freed"])
        for when, lease in log["began"]:
            granted_at[lease] = (when, log["name"])
        intervals = sorted(
            (begin, next((t for t, name in log["ended"] if name == lease), float("inf")))
            for begin, lease in log["began"]
        )
        double += [f"{log['name']}: overlapping leases" for a, b in itertools.pairwise(intervals) if b[0] < a[1]]

    free_ms: list[float] = []
    grant_ms: list[float] = []
    queued_ms: list[float] = []
    problems: list[str] = []
    for r in records:
        if r["error"] or r["ready"] is None or r["released"] is None:
            problems.append(f"{r['client']} {r['name'] or '(not created)'}: {r['error'] or 'never ready'}")
            continue
        wait_ms = 1000 * (r["ready"] - r["requested"])
        (free_ms if r["ready_at_create"] else queued_ms).append(wait_ms)
        grant = granted_at.get(r["name"])
        kept = stored.get(r["name"])
        if grant is None or grant[1] != r["exporter"]:
            problems.append(f"{r['name']}: the client got {r['exporter']}, the exporters saw {grant}")
            continue
        if kept is None or (kept["phase"], kept["reason"], kept["exporter"]) != ("Ended", "Released", r["exporter"]):
            problems.append(f"{r['name']}: stored as {kept}")
            continue
        freed = [t for t in freed_before[grant[1]] if t <= grant[0]]
        grant_ms.append(1000 * (grant[0] - max([r["requested"], *freed[-1:]])))
    active = [name for name, row in stored.items() if row["phase"] in ("Pending", "Ready")]
    began, ended = raw["window"]
    # granted while every client was still starting new leases (the tail only finishes them)
    steady = [r for r in records if r["ready"] is not None and r["ready"] <= began + raw["seconds"]]
    # a lease released before its exporter's Listen call arrived: the real exporter meets this too
    peer_errors = [e for log in logs for e in log["errors"] if not re.search(r"^listen .*is not active", e)]

    def stats(values: list[float]) -> dict[str, float | int]:
        if not values:
            return {"count": 0}
        return {"count": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
                "max": max(values)}

    mib = 1024 * 1024
    return {
        "exporters": EXPORTERS, "clients": CLIENTS, "pace": raw["pace"],
        "setup_s": raw["setup"],
        "load_s": ended - began,
        "leases": len(records), "leases_per_s": len(steady) / raw["seconds"],
        "free_exporter_request_to_ready_ms": stats(free_ms),
        "grant_latency_ms": stats(grant_ms),
        "queued_request_to_ready_ms": stats(queued_ms),
        "create_lease_call_ms": stats([1000 * (r["created"] - r["requested"]) for r in records if r["created"]]),
        "report_status_call_ms": stats([1000 * s for log in logs for t, s in log["reports"] if began <= t <= ended]),
        "controller_rss_MiB": {k: v / mib for k, v in raw["memory"].items()},
        # shares of the whole machine (all cores) during the load: the controller, the simulated
        # peers (they share the machine with it), everything together
        "cpu_share": {k: v / (ended - began) / (os.cpu_count() or 1) for k, v in raw["cpu_s"].items()},
        "checks": {
            "double_leased": len(double), "lost_or_wrong": len(problems), "left_active": len(active),
            "peer_errors": len(peer_errors),
            "examples": (double + problems + active + peer_errors)[:10],
        },
    }


def measure(quick: bool = False, saturate: bool = False) -> dict[str, Any]:
    """Run the whole scenario (load for 20 s quick, 60 s otherwise) and analyse it."""
    pace, seconds = (SATURATE if saturate else PACE), (20.0 if quick else 60.0)
    with tempfile.TemporaryDirectory(prefix="jmp-scale-") as tmp:
        raw = run(Path(tmp), seconds, pace)
    raw["pace"], raw["seconds"] = pace, seconds
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(raw))  # every lease and assignment, for a closer look
    return analyse(raw)


def figures(result: dict[str, Any]) -> dict[str, float]:
    """The flat `scale.*` figures run.py tabulates."""
    flat = {
        "scale.free_p50_ms": result["free_exporter_request_to_ready_ms"].get("p50"),
        "scale.free_p99_ms": result["free_exporter_request_to_ready_ms"].get("p99"),
        "scale.grant_p50_ms": result["grant_latency_ms"].get("p50"),
        "scale.grant_p99_ms": result["grant_latency_ms"].get("p99"),
        "scale.queued_p50_ms": result["queued_request_to_ready_ms"].get("p50"),
        "scale.leases_per_s": result["leases_per_s"],
        "scale.rss_idle_MiB": result["controller_rss_MiB"]["idle"],
        "scale.rss_connected_MiB": result["controller_rss_MiB"]["connected"],
        "scale.rss_peak_MiB": result["controller_rss_MiB"]["peak"],
        "scale.controller_cpu_share": result["cpu_share"]["controller"],
        "scale.double_leased": result["checks"]["double_leased"],
        "scale.lost_or_wrong": result["checks"]["lost_or_wrong"] + result["checks"]["left_active"],
    }
    return {key: float(value) for key, value in flat.items() if value is not None}


#: The lines `run.py` adds to its table (no floor: the targets are absolute).
ROWS = [
    Row("scale: lease request -> Ready, free exporter, p50", "scale.free_p50_ms", "", "ms", "info"),
    Row("scale: lease request -> Ready, free exporter, p99", "scale.free_p99_ms", "", "ms", "value", "<=", 50),
    Row("scale: grant latency, every lease, p50", "scale.grant_p50_ms", "", "ms", "info"),
    Row("scale: grant latency, every lease, p99", "scale.grant_p99_ms", "", "ms", "value", "<=", 100),
    Row("scale: queued lease, request -> Ready, p50", "scale.queued_p50_ms", "", "ms", "info"),
    Row("scale: leases granted and released", "scale.leases_per_s", "", "leases/s", "info"),
    Row("scale: controller RSS, idle", "scale.rss_idle_MiB", "", "MiB", "info"),
    Row("scale: controller RSS, 1,000 exporters connected", "scale.rss_connected_MiB", "", "MiB", "info"),
    Row("scale: controller RSS, peak under load", "scale.rss_peak_MiB", "", "MiB", "info"),
    Row("scale: controller CPU, share of the machine", "scale.controller_cpu_share", "", "", "info"),
    Row("scale: exporters ever leased twice at once", "scale.double_leased", "", "exporters", "value", "<=", 0),
    Row("scale: leases lost, wrong or left active", "scale.lost_or_wrong", "", "leases", "value", "<=", 0),
]


def main() -> None:
    """Measure and print JSON."""
    print(json.dumps(measure("--quick" in sys.argv, "--saturate" in sys.argv), indent=2))


if __name__ == "__main__":
    main()
