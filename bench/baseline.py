"""The bare-grpcio floor: the same calls and streams as ours, with nothing of Jumpstarter in between.

The server (bench.servers `bare`) runs in a separate process on a unix socket; the client here
uses plain generated stubs. `python bench/baseline.py [--quick]` prints the figures.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
from google.protobuf.struct_pb2 import Value

from bench.harness import (
    KIB,
    MIB,
    Settings,
    child_server,
    event_loop,
    interleaved_latency,
    repeated_rate,
    threaded_rate,
)
from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb
from jumpstarter.protocol.v1 import jumpstarter_pb2_grpc, router_pb2, router_pb2_grpc

DATA = router_pb2.FRAME_TYPE_DATA
GOAWAY = router_pb2.FRAME_TYPE_GOAWAY
#: Message size of the echo figures.
ECHO_SIZE = 64 * KIB


def _target(path: str) -> str:
    return f"unix://{path}"


def _call_request(method: str = "echo_async") -> Any:
    return pb.DriverCallRequest(uuid=str(uuid.uuid4()), method=method, args=[Value(number_value=1)])


@contextmanager
def bare_calls(path: str, portal: Any) -> Iterator[dict[str, Callable[[], object]]]:
    """Zero-argument callables making one bare DriverCall each: `unary` against the server at
    `path` (another process); `unary_inproc` against a bare server on `portal`'s event loop in
    this process, sharing the GIL with the client as `serve()` does (a diagnostic floor)."""
    from bench.servers import bare_server

    request = _call_request()
    with ExitStack() as stack:
        remote = stack.enter_context(grpc.insecure_channel(_target(path)))
        local_path = stack.enter_context(portal.wrap_async_context_manager(bare_server()))
        local = stack.enter_context(grpc.insecure_channel(_target(local_path)))
        remote_call = jumpstarter_pb2_grpc.ExporterServiceStub(remote).DriverCall
        local_call = jumpstarter_pb2_grpc.ExporterServiceStub(local).DriverCall
        yield {
            "unary": functools.partial(remote_call, request),
            "unary_inproc": functools.partial(local_call, request),
        }


def unary(path: str, settings: Settings, portal: Any, threads: int = 16) -> dict[str, float]:
    """p50/p99 of one sync client calling DriverCall (in another process and in this one), and
    calls/s of `threads` threads (other process)."""
    figures: dict[str, float] = {}
    with bare_calls(path, portal) as calls:
        for name, stats in interleaved_latency(calls, settings).items():
            figures.update({f"{name}.{key}": value for key, value in stats.items()})
        figures["unary.threads16_calls_per_s"] = threaded_rate(calls["unary"], threads, settings.seconds)
    return figures


def server_streaming(path: str, settings: Settings) -> float:
    """Items/s of StreamingDriverCalls yielding `settings.stream_items` small numbers each."""
    count = settings.stream_items
    request = pb.StreamingDriverCallRequest(uuid="bench", method="items", args=[Value(number_value=count)])
    with grpc.insecure_channel(_target(path)) as channel:
        call = jumpstarter_pb2_grpc.ExporterServiceStub(channel).StreamingDriverCall

        def run() -> int:
            received = sum(1 for _ in call(request))
            assert received == count, (received, count)
            return received

        return repeated_rate(run, settings.seconds)


# ---- byte streams, sync client (request iterator consumed by a gRPC thread) --------------------
def oneway_sync(path: str, size: int, seconds: float) -> float:
    """Bytes/s delivered to the sink, sending `size`-byte messages for `seconds`."""
    message = router_pb2.StreamRequest(payload=b"x" * size, frame_type=DATA)

    def frames() -> Any:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            yield message
        yield router_pb2.StreamRequest(frame_type=GOAWAY)

    with grpc.insecure_channel(_target(path)) as channel:
        stream = router_pb2_grpc.RouterServiceStub(channel).Stream
        start = time.perf_counter()
        replies = stream(frames(), metadata=(("mode", "sink"),))
        total = int(next(iter(replies)).payload)
        elapsed = time.perf_counter() - start
    return total / elapsed


def echo_sync(path: str, size: int, seconds: float) -> float:
    """Bytes/s echoed back (counted once), sending `size`-byte messages for `seconds`."""
    message = router_pb2.StreamRequest(payload=b"x" * size, frame_type=DATA)
    sent = [0]

    def frames() -> Any:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            yield message
            sent[0] += size
        yield router_pb2.StreamRequest(frame_type=GOAWAY)

    with grpc.insecure_channel(_target(path)) as channel:
        stream = router_pb2_grpc.RouterServiceStub(channel).Stream
        start = time.perf_counter()
        received = 0
        for reply in stream(frames(), metadata=(("mode", "echo"),)):
            if reply.frame_type == GOAWAY:
                break
            received += len(reply.payload)
        elapsed = time.perf_counter() - start
    assert received == sent[0], (received, sent[0])
    return received / elapsed


# ---- byte streams, grpc.aio client -------------------------------------------------------------
async def _oneway_aio(path: str, size: int, seconds: float) -> float:
    message = router_pb2.StreamRequest(payload=b"x" * size, frame_type=DATA)
    async with grpc.aio.insecure_channel(_target(path)) as channel:
        call = router_pb2_grpc.RouterServiceStub(channel).Stream(metadata=(("mode", "sink"),))
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            await call.write(message)
        await call.write(router_pb2.StreamRequest(frame_type=GOAWAY))
        await call.done_writing()
        total = int((await call.read()).payload)
        elapsed = time.perf_counter() - start
        call.cancel()
    return total / elapsed


async def _echo_aio(path: str, size: int, seconds: float) -> float:
    message = router_pb2.StreamRequest(payload=b"x" * size, frame_type=DATA)
    async with grpc.aio.insecure_channel(_target(path)) as channel:
        call = router_pb2_grpc.RouterServiceStub(channel).Stream(metadata=(("mode", "echo"),))
        sent = 0

        async def writer() -> None:
            nonlocal sent
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                await call.write(message)
                sent += size
            await call.write(router_pb2.StreamRequest(frame_type=GOAWAY))
            await call.done_writing()

        start = time.perf_counter()
        task = asyncio.ensure_future(writer())
        received = 0
        async for reply in call:
            if reply.frame_type == GOAWAY:
                break
            received += len(reply.payload)
        elapsed = time.perf_counter() - start
        await task
    assert received == sent, (received, sent)
    return received / elapsed


def oneway_aio(path: str, size: int, seconds: float, portal: Any) -> float:
    """`oneway_sync` with a grpc.aio client on the event loop of `portal`."""
    return portal.call(_oneway_aio, path, size, seconds)


def echo_aio(path: str, size: int, seconds: float, portal: Any) -> float:
    """`echo_sync` with a grpc.aio client on the event loop of `portal`."""
    return portal.call(_echo_aio, path, size, seconds)


def paired_streams(path: str, portal: Any) -> dict[str, Callable[[float], float]]:
    """The stream figures compared with ours, as `run(seconds) -> MB/s`: 64 KiB one way and
    64 KiB echo, sync and aio clients (the aio ones on `portal`'s loop)."""
    return {
        "sync.oneway_64k_MBps": lambda seconds: oneway_sync(path, 64 * KIB, seconds) / 1e6,
        "aio.oneway_64k_MBps": lambda seconds: oneway_aio(path, 64 * KIB, seconds, portal) / 1e6,
        "sync.echo_64k_MBps": lambda seconds: echo_sync(path, ECHO_SIZE, seconds) / 1e6,
        "aio.echo_64k_MBps": lambda seconds: echo_aio(path, ECHO_SIZE, seconds, portal) / 1e6,
    }


def other_streams(path: str, settings: Settings, portal: Any) -> dict[str, float]:
    """One-way MB/s at 4 KiB and 1 MiB messages, both client flavours (messages/s are derived
    from these by bench.targets)."""
    figures: dict[str, float] = {}
    for label, size in (("4k", 4 * KIB), ("1m", MIB)):
        figures[f"sync.oneway_{label}_MBps"] = oneway_sync(path, size, settings.seconds) / 1e6
        figures[f"aio.oneway_{label}_MBps"] = oneway_aio(path, size, settings.seconds, portal) / 1e6
    return figures


def measure(path: str, settings: Settings, portal: Any, *, paired: bool = True) -> dict[str, float]:
    """Every floor figure against the bare server at `path` (plus the in-process diagnostic),
    async work on `portal`; `paired=False` leaves out what run.py measures alternating with ours."""
    figures: dict[str, float] = {}
    if paired:
        figures.update(unary(path, settings, portal))
        for name, run in paired_streams(path, portal).items():
            figures[f"stream.{name}"] = run(settings.seconds)
    figures["streaming.items_per_s"] = server_streaming(path, settings)
    figures.update({f"stream.{k}": v for k, v in other_streams(path, settings, portal).items()})
    return figures


def main() -> None:
    """Print the floor figures as JSON."""
    settings = Settings.quick() if "--quick" in sys.argv else Settings()
    with child_server("bare") as path, event_loop() as portal:
        figures = measure(path, settings, portal)
    json.dump(figures, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
