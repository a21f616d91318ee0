"""The drivers the benchmarks call: trivial bodies, so what is measured is the framework."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.streams.stapled import StapledObjectStream

from jumpstarter.driver import Driver, export, exportstream

#: Chunks buffered by the loopback stream before the sender has to wait (at 64 KiB: 4 MiB).
LOOPBACK_BUFFER = 64


class CountingSink:
    """A byte stream that swallows what it is sent and, after end-of-input, answers with the
    byte count (as ASCII digits), so a client knows everything arrived."""

    def __init__(self) -> None:
        self.total = 0
        self._finished = anyio.Event()
        self._answered = False

    async def send(self, data: bytes) -> None:
        self.total += len(data)

    async def send_eof(self) -> None:
        self._finished.set()

    async def receive(self) -> bytes:
        await self._finished.wait()
        if self._answered:
            raise anyio.EndOfStream
        self._answered = True
        return str(self.total).encode()

    async def aclose(self) -> None:
        self._finished.set()


@dataclass(kw_only=True)
class BenchDriver(Driver):
    """Echo methods of every call kind, a logging twin, and two byte streams (sink, loopback)."""

    @export
    async def echo_async(self, value: int) -> int:
        """Return `value` (async method: runs on the event loop)."""
        return value

    @export
    def echo_sync(self, value: int) -> int:
        """Return `value` (sync method: runs in a worker thread)."""
        return value

    @export
    async def echo_logged(self, value: int) -> int:
        """Return `value`, logging one INFO record per call."""
        self.logger.info("echo %d", value)
        return value

    @export
    async def items(self, count: int) -> AsyncIterator[int]:
        """Yield `count` small integers."""
        for index in range(count):
            yield index

    @exportstream
    @asynccontextmanager
    async def sink(self) -> AsyncIterator[CountingSink]:
        """A stream that counts what it receives and reports the total after end-of-input."""
        yield CountingSink()

    @exportstream
    @asynccontextmanager
    async def loopback(self) -> AsyncIterator[StapledObjectStream[bytes]]:
        """A stream that sends back every chunk it receives."""
        send, receive = anyio.create_memory_object_stream[bytes](LOOPBACK_BUFFER)
        async with send, receive:
            yield StapledObjectStream(send, receive)
