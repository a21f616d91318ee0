"""Servers the benchmarks talk to, run in a child process (`python -m bench.servers KIND`) or,
for the in-process diagnostics, on a background event loop.

KIND `bare` is the floor: a grpc.aio server with the smallest possible ExporterService and
RouterService. KIND `jumpstarter` is ours: `local_session(BenchDriver())`. Either prints its unix
socket path on one line, then serves until its stdin closes.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio
import grpc

from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb
from jumpstarter.protocol.v1 import jumpstarter_pb2_grpc, router_pb2, router_pb2_grpc

DATA = router_pb2.FRAME_TYPE_DATA
GOAWAY = router_pb2.FRAME_TYPE_GOAWAY


class BareExporter(jumpstarter_pb2_grpc.ExporterServiceServicer):
    """DriverCall echoes its first argument; StreamingDriverCall yields N numbers."""

    async def DriverCall(self, request: Any, context: Any) -> Any:
        return pb.DriverCallResponse(uuid=request.uuid, result=request.args[0])

    async def StreamingDriverCall(self, request: Any, context: Any) -> AsyncIterator[Any]:
        response = pb.StreamingDriverCallResponse
        uuid = request.uuid
        for index in range(int(request.args[0].number_value)):
            result = pb.StreamingDriverCallResponse().result
            result.number_value = index
            yield response(uuid=uuid, result=result)


class BareRouter(router_pb2_grpc.RouterServiceServicer):
    """Stream with metadata `mode: sink` counts bytes and answers the total after GOAWAY;
    `mode: echo` writes every frame straight back."""

    async def Stream(self, request_iterator: Any, context: Any) -> None:
        mode = dict(context.invocation_metadata() or ()).get("mode", "sink")
        total = 0
        async for frame in request_iterator:
            if frame.frame_type == GOAWAY:
                break
            if mode == "echo":
                await context.write(router_pb2.StreamResponse(payload=frame.payload, frame_type=DATA))
            else:
                total += len(frame.payload)
        if mode != "echo":
            await context.write(router_pb2.StreamResponse(payload=str(total).encode(), frame_type=DATA))
        await context.write(router_pb2.StreamResponse(frame_type=GOAWAY))


@asynccontextmanager
async def bare_server() -> AsyncIterator[str]:
    """The floor server on a fresh unix socket (default gRPC options); yields the socket path."""
    with tempfile.TemporaryDirectory(prefix="jmp-bench-") as tmp:
        path = os.path.join(tmp, "bare.sock")
        server = grpc.aio.server()
        jumpstarter_pb2_grpc.add_ExporterServiceServicer_to_server(BareExporter(), server)
        router_pb2_grpc.add_RouterServiceServicer_to_server(BareRouter(), server)
        server.add_insecure_port(f"unix://{path}")
        await server.start()
        try:
            yield path
        finally:
            await server.stop(grace=None)


@asynccontextmanager
async def jumpstarter_server() -> AsyncIterator[str]:
    """Our exporter session serving `BenchDriver`; yields the socket path."""
    from bench.drivers import BenchDriver
    from jumpstarter.exporter.local import local_session

    async with local_session(BenchDriver()) as path:
        yield path


SERVERS = {"bare": bare_server, "jumpstarter": jumpstarter_server}


async def serve_until_stdin_closes(kind: str) -> None:
    """Print the socket path, then serve until the parent closes our stdin."""
    async with SERVERS[kind]() as path:
        print(path, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


if __name__ == "__main__":
    anyio.run(serve_until_stdin_closes, sys.argv[1])
