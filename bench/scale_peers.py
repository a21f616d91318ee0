"""The simulated peers of `bench_scale.py`: many exporters, or many clients, in one asyncio process.

    python -m bench.scale_peers exporters SPEC.json RESULT.json
    python -m bench.scale_peers clients SPEC.json RESULT.json

Exporters speak `jumpstarter.v1.ControllerService` exactly as `exporter/controlled.py` does, minus
the driver session: Register (labels and device reports), the Status stream, ReportStatus once per
change (the real one skips a state it has already reported on this connection), and a Listen
stream while a lease is held. Each keeps its own log of
assignments, timestamped when they arrive, which is what the double-lease check reads.

Clients use the CLI's own code (`ControllerSession.create_lease`, `wait_ready`, `release_lease`)
in a loop: pick a selector, lease, wait for Ready, hold briefly, release, pause.

Every peer has its own channel and TCP connection (a local subchannel pool), as separate hosts do.
Protocol with the parent: print `ready` once every peer is connected; clients then wait for a `go`
line on stdin and run for the seconds in the spec; exporters run until stdin closes; both write
their records to RESULT.json and print `done`.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from jumpstarter.exporter.status import ExporterStatus

#: One TCP connection per peer (channels with equal arguments would share one otherwise).
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)
#: Leases never expire during a run; a client waits this long for Ready at most.
LEASE_SECONDS = 600.0
PATIENCE = 120.0


@dataclass(slots=True)
class ExporterLog:
    """What one simulated exporter saw."""

    name: str
    #: (arrival time, lease name or "" when unleased, client name)
    assignments: list[tuple[float, str, str]] = field(default_factory=list)
    #: (time, lease name) of each lease it held: begin and end
    began: list[tuple[float, str]] = field(default_factory=list)
    ended: list[tuple[float, str]] = field(default_factory=list)
    #: when it reported AVAILABLE after each lease (free again from then on)
    freed: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: (start time, seconds) of each ReportStatus call
    reports: list[tuple[float, float]] = field(default_factory=list)


class SimulatedExporter:
    """One exporter's controller conversation, without drivers."""

    def __init__(self, spec: dict[str, Any], entry: dict[str, Any], credentials: Any) -> None:
        self.endpoint = spec["endpoint"]
        self.labels = entry["labels"]
        self.credentials = credentials
        self.metadata = (("authorization", f"Bearer {entry['token']}"), ("jumpstarter-kind", "Exporter"),
                         ("jumpstarter-namespace", "default"), ("jumpstarter-name", entry["name"]))
        self.log = ExporterLog(entry["name"])
        self.lease = ""
        self.status = ExporterStatus.AVAILABLE
        self.listen: asyncio.Task[None] | None = None

    async def run(self, connected: asyncio.Semaphore) -> None:
        """Register, open the Status stream and follow it until cancelled."""
        from jumpstarter.client.controller import CHANNEL_OPTIONS
        from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb
        from jumpstarter.protocol.v1 import jumpstarter_pb2_grpc

        options = (*CHANNEL_OPTIONS, *OWN_CONNECTION)
        async with grpc.aio.secure_channel(self.endpoint, self.credentials, options=options) as channel:
            stub = jumpstarter_pb2_grpc.ControllerServiceStub(channel)
            reports = [
                pb.DriverInstanceReport(uuid=f"{self.log.name}-root", labels={"jumpstarter.dev/client": "composite"}),
                pb.DriverInstanceReport(uuid=f"{self.log.name}-power", parent_uuid=f"{self.log.name}-root",
                                        labels={"jumpstarter.dev/name": "power"}, description="power switch"),
            ]
            await stub.Register(pb.RegisterRequest(labels=self.labels, reports=reports), metadata=self.metadata)
            stream = stub.Status(pb.StatusRequest(), metadata=self.metadata)
            await self._report(stub)
            connected.release()
            arrivals: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()

            async def receive() -> None:  # timestamps assignments as they arrive, however busy we are
                async for assignment in stream:
                    arrivals.put_nowait((time.time(), assignment))

            reader = asyncio.ensure_future(receive())
            try:
                while True:
                    when, assignment = await arrivals.get()
                    await self._apply(stub, when, assignment)
            finally:
                reader.cancel()
                self._stop_listen()

    async def _apply(self, stub: Any, when: float, assignment: Any) -> None:
        wanted = assignment.lease_name if assignment.leased else ""
        self.log.assignments.append((when, wanted, assignment.client_name if wanted else ""))
        if self.lease and wanted and wanted != self.lease:
            self.log.violations.append(f"{when:.3f}: assigned {wanted} while holding {self.lease}")
        if self.lease and wanted != self.lease:
            self.log.ended.append((when, self.lease))
            self._stop_listen()
            self.lease, self.status = "", ExporterStatus.AVAILABLE
            self.log.freed.append(time.time())
            await self._report(stub)  # once per change, as the real one reports
        if wanted and wanted != self.lease:
            self.lease, self.status = wanted, ExporterStatus.LEASE_READY
            self.log.began.append((when, wanted))
            self._start_listen(stub, wanted)
            await self._report(stub)

    def _start_listen(self, stub: Any, lease_name: str) -> None:
        from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb

        async def listen() -> None:
            try:
                async for _ in stub.Listen(pb.ListenRequest(lease_name=lease_name), metadata=self.metadata):
                    pass
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.CANCELLED:
                    self.log.errors.append(f"listen {lease_name}: {exc.code().name} {exc.details()}")

        self._stop_listen()
        self.listen = asyncio.ensure_future(listen())

    def _stop_listen(self) -> None:
        if self.listen is not None:
            self.listen.cancel()
            self.listen = None

    async def _report(self, stub: Any) -> None:
        from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb

        request = pb.ReportStatusRequest(status=int(self.status), message="")  # type: ignore[arg-type]
        began = time.time()
        try:
            await stub.ReportStatus(request, metadata=self.metadata, timeout=60)
            self.log.reports.append((began, time.time() - began))
        except grpc.aio.AioRpcError as exc:
            self.log.errors.append(f"report {self.status.name}: {exc.code().name} {exc.details()}")


@dataclass(slots=True)
class LeaseRecord:
    """One lease as a simulated client lived it (times: seconds since the epoch)."""

    client: str
    selector: str
    requested: float
    name: str = ""
    created: float | None = None  # CreateLease answered
    ready_at_create: bool = False  # CreateLease already answered Ready: a free exporter existed
    ready: float | None = None
    exporter: str = ""
    released: float | None = None
    error: str = ""


async def connect_client(spec: dict[str, Any], entry: dict[str, Any]) -> Any:
    """The CLI's `ControllerSession` for one client, on a connection of its own, connected."""
    from jumpstarter.client.controller import CHANNEL_OPTIONS
    from jumpstarter.client.lease import ControllerSession
    from jumpstarter.config.client import ClientConfig
    from jumpstarter.config.common import ObjectMeta, TLSConfig

    config = ClientConfig(metadata=ObjectMeta(name=entry["name"], namespace="default"), endpoint=spec["endpoint"],
                          tls=TLSConfig(ca=spec["ca"]), token=entry["token"])
    session = ControllerSession(config)
    await session.channel.close(None)
    creds = grpc.ssl_channel_credentials(root_certificates=spec["ca"].encode())
    session.channel = grpc.aio.secure_channel(spec["endpoint"], creds, options=(*CHANNEL_OPTIONS, *OWN_CONNECTION))
    await asyncio.wait_for(session.channel.channel_ready(), 60)
    return session


async def run_client(
    spec: dict[str, Any], entry: dict[str, Any], session: Any, seconds: float, out: list[LeaseRecord]
) -> None:
    """Lease, wait, hold, release, pause, until `seconds` have passed (the current lease is finished)."""
    from jumpstarter.client.lease import lease_phase, wait_ready

    rng = random.Random(entry["name"])
    hold, pause = spec["hold"], spec["pause"]
    deadline = time.time() + seconds
    # spread over one mean cycle, as independent users are: no burst of 200 requests at the start
    await asyncio.sleep(rng.uniform(0, sum(hold) / 2 + sum(pause) / 2))
    try:
        while time.time() < deadline:
            record = LeaseRecord(entry["name"], pick_selector(rng, spec), time.time())
            out.append(record)
            try:
                lease = await session.create_lease(record.selector, LEASE_SECONDS)
                record.created, record.name = time.time(), lease.name.rsplit("/", 1)[-1]
                record.ready_at_create = lease_phase(lease)[0] == "Ready"
                ready = await wait_ready(session, record.name, lambda _: None, PATIENCE)
                record.ready, record.exporter = time.time(), ready.exporter
                await asyncio.sleep(rng.uniform(*hold))
            except Exception as exc:  # recorded: a failed lease is a finding, not a crash
                record.error = f"{type(exc).__name__}: {exc}"
            finally:
                if record.name:
                    try:
                        await session.release_lease(record.name)
                        record.released = time.time()
                    except Exception as exc:
                        record.error += f"; release: {type(exc).__name__}: {exc}"
            await asyncio.sleep(rng.uniform(*pause))
    finally:
        await session.close()


def pick_selector(rng: random.Random, spec: dict[str, Any]) -> str:
    """A selector from the mix: any exporter, one of the groups, or one of the few narrow racks."""
    draw = rng.random()
    if draw < spec["mix"]["rack"]:
        return f"rack=r{rng.randrange(spec['racks'])}"
    if draw < spec["mix"]["rack"] + spec["mix"]["group"]:
        return f"pool=bench,group=g{rng.randrange(spec['groups'])}"
    return "pool=bench"


async def loop_lag(out: list[float]) -> None:
    """How late this process's event loop wakes a 20 ms sleep (seconds), until cancelled."""
    while True:
        began = time.perf_counter()
        await asyncio.sleep(0.02)
        out.append(time.perf_counter() - began - 0.02)


async def exporters_main(spec: dict[str, Any], result: Path) -> None:
    """Connect every exporter, say `ready`, run until stdin closes, write the logs."""
    credentials = grpc.ssl_channel_credentials(root_certificates=spec["ca"].encode())
    peers = [SimulatedExporter(spec, entry, credentials) for entry in spec["peers"]]
    connected = asyncio.Semaphore(0)
    tasks = [asyncio.ensure_future(p.run(connected)) for p in peers]
    for _ in peers:
        await connected.acquire()
    print("ready", flush=True)
    lags: list[float] = []
    lag = asyncio.ensure_future(loop_lag(lags))
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    lag.cancel()
    print(f"loop lag: max {max(lags, default=0):.3f}s, p99 {sorted(lags)[int(len(lags) * .99)] if lags else 0:.3f}s",
          file=sys.stderr)
    for task in tasks:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for peer, outcome in zip(peers, outcomes, strict=True):
        if isinstance(outcome, Exception) and not isinstance(outcome, asyncio.CancelledError):
            peer.log.errors.append(f"stream ended: {outcome!r}")
    result.write_text(json.dumps([asdict(p.log) for p in peers]))  # noqa: ASYNC240 (the run is over)
    print("done", flush=True)


async def clients_main(spec: dict[str, Any], result: Path) -> None:
    """Connect every client, say `ready`, wait for `go`, run them for `spec['seconds']`, write the
    records."""
    sessions = await asyncio.gather(*(connect_client(spec, entry) for entry in spec["peers"]))
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        return
    records: list[LeaseRecord] = []
    await asyncio.gather(*(
        run_client(spec, entry, session, spec["seconds"], records)
        for entry, session in zip(spec["peers"], sessions, strict=True)
    ))
    result.write_text(json.dumps([asdict(r) for r in records]))  # noqa: ASYNC240 (the run is over)
    print("done", flush=True)


def main() -> None:
    """`scale_peers exporters|clients SPEC RESULT`."""
    kind, spec_path, result = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    # hundreds of peers in one process: grpc's poller thread must not wait 5 ms for the GIL per
    # hand-off to the event loop (a delay of this load generator, not of what it measures)
    sys.setswitchinterval(0.0005)
    spec = json.loads(spec_path.read_text())
    runner = {"exporters": exporters_main, "clients": clients_main}[kind]
    asyncio.run(runner(spec, result))


if __name__ == "__main__":
    main()
