"""`@exportstream` byte streams end to end: integrity at volume, small writes, and both sides
closing early."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.streams.stapled import StapledObjectStream

from jumpstarter.client import DriverClient
from jumpstarter.common.utils import serve, serve_async
from jumpstarter.driver import Driver, exportstream
from jumpstarter.errors import DriverError

DEADLINE = 30
MiB = 1 << 20


class HashingSink:
    """Driver-side stream: hashes everything received; after EOF answers `<count> <sha256>`."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._count = 0
        self._eof = anyio.Event()
        self._answered = False

    async def send(self, data: bytes) -> None:
        self._hash.update(data)
        self._count += len(data)

    async def send_eof(self) -> None:
        self._eof.set()

    async def receive(self) -> bytes:
        await self._eof.wait()
        if self._answered:
            raise anyio.EndOfStream
        self._answered = True
        return f"{self._count} {self._hash.hexdigest()}".encode()

    async def aclose(self) -> None:
        self._eof.set()


class Firehose:
    """Driver-side stream producing data for as long as anyone reads."""

    async def send(self, data: bytes) -> None:
        pass

    async def send_eof(self) -> None:
        pass

    async def receive(self) -> bytes:
        await anyio.lowlevel.checkpoint()
        return b"\xaa" * 65536

    async def aclose(self) -> None:
        pass


class Recorder:
    """Driver-side stream noting what reached it; sends nothing back, and ends its side once the
    client has said it is done."""

    def __init__(self, events: list[str], got_data: threading.Event) -> None:
        self.events = events
        self.got_data = got_data
        self._eof = anyio.Event()

    async def send(self, data: bytes) -> None:
        self.events.append("data")
        self.got_data.set()

    async def send_eof(self) -> None:
        self.events.append("eof")
        self._eof.set()

    async def receive(self) -> bytes:
        await self._eof.wait()
        raise anyio.EndOfStream

    async def aclose(self) -> None:
        pass


class TrackedDriverError(DriverError):
    """Raised by a stream that cannot be set up."""


@dataclass(kw_only=True)
class Streams(Driver):
    """Byte streams of several behaviours."""

    closed: dict[str, threading.Event] = field(
        default_factory=lambda: {name: threading.Event() for name in ("echo", "firehose", "recorder")}
    )
    recorded: list[str] = field(default_factory=list)
    recorder_got_data: threading.Event = field(default_factory=threading.Event)

    @exportstream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        """Echo every byte back."""
        send, receive = anyio.create_memory_object_stream[bytes](16)
        try:
            async with send, receive:
                yield StapledObjectStream(send, receive)
        finally:
            self.closed["echo"].set()

    @exportstream
    @asynccontextmanager
    async def sink(self) -> AsyncIterator[Any]:
        yield HashingSink()

    @exportstream
    @asynccontextmanager
    async def firehose(self) -> AsyncIterator[Any]:
        try:
            yield Firehose()
        finally:
            self.closed["firehose"].set()

    @exportstream
    @asynccontextmanager
    async def recorder(self) -> AsyncIterator[Any]:
        try:
            yield Recorder(self.recorded, self.recorder_got_data)
        finally:
            self.closed["recorder"].set()

    @exportstream
    @asynccontextmanager
    async def goodbye(self) -> AsyncIterator[Any]:
        """Say goodbye and hang up: the driver side ends the stream."""
        outgoing, incoming = anyio.create_memory_object_stream[bytes](4)
        to_driver, from_client = anyio.create_memory_object_stream[bytes](4)
        async with outgoing, to_driver, from_client:
            await outgoing.send(b"goodbye")
            outgoing.close()
            yield StapledObjectStream(to_driver, incoming)

    @exportstream
    @asynccontextmanager
    async def broken(self) -> AsyncIterator[Any]:
        raise TrackedDriverError("serial port /dev/ttyUSB9 is gone")
        yield

    @exportstream
    @asynccontextmanager
    async def slow_to_fail(self) -> AsyncIterator[Any]:
        await anyio.lowlevel.checkpoint()
        raise TimeoutError("device did not answer")
        yield


@pytest.fixture(scope="module")
def driver() -> Streams:
    return Streams()


@pytest.fixture(scope="module")
def client(driver: Streams) -> Iterator[DriverClient]:
    with serve(driver) as root:
        yield root


def numbered_chunks(count: int, size: int) -> Iterator[bytes]:
    """Distinct chunks (a counter on random bytes), so reordering or duplication shows."""
    block = os.urandom(size)
    for i in range(count):
        yield i.to_bytes(8, "big") + block[8:]


def test_one_gib_through_a_sink_keeps_every_byte(client: DriverClient) -> None:
    expected = hashlib.sha256()
    with client.stream("sink") as stream:
        for chunk in numbered_chunks(1024, MiB):
            expected.update(chunk)
            stream.send(chunk)
        stream.send_eof()
        answer = b"".join(stream)
    assert answer.decode() == f"{1 << 30} {expected.hexdigest()}"


def test_many_small_writes_echo_intact(client: DriverClient) -> None:
    """4 KiB writes (coalesced on the wire) come back complete and in order."""
    chunks = list(numbered_chunks(4096, 4096))
    received = bytearray()
    with client.stream() as stream:

        def read_all() -> None:
            for data in stream:
                received.extend(data)

        reader = threading.Thread(target=read_all)
        reader.start()
        for chunk in chunks:
            stream.send(chunk)
        stream.send_eof()
        reader.join(DEADLINE)
        assert not reader.is_alive()
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_many_small_writes_into_a_sink(client: DriverClient) -> None:
    expected = hashlib.sha256()
    with client.stream("sink") as stream:
        for chunk in numbered_chunks(8192, 4096):
            expected.update(chunk)
            stream.send(chunk)
        stream.send_eof()
        answer = b"".join(stream)
    assert answer.decode() == f"{8192 * 4096} {expected.hexdigest()}"


def test_eof_from_client_ends_the_echo(client: DriverClient) -> None:
    with client.stream() as stream:
        stream.send(b"last words")
        stream.send_eof()
        assert b"".join(stream) == b"last words"


def test_receive_times_out_when_nothing_arrives(client: DriverClient) -> None:
    with client.stream() as stream:
        with pytest.raises(TimeoutError):
            stream.receive(timeout=0.05)


def test_client_closing_early_releases_the_driver_stream(client: DriverClient, driver: Streams) -> None:
    driver.closed["echo"].clear()
    with client.stream() as stream:
        stream.send(b"half a conversation")
        assert stream.receive(timeout=DEADLINE) == b"half a conversation"
    assert driver.closed["echo"].wait(DEADLINE)
    with client.stream() as stream:  # the exporter is fine afterwards
        stream.send(b"again")
        assert stream.receive(timeout=DEADLINE) == b"again"


def test_client_closing_a_busy_stream_stops_the_driver(client: DriverClient, driver: Streams) -> None:
    driver.closed["firehose"].clear()
    with client.stream("firehose") as stream:
        received = 0
        while received < 8 * MiB:
            received += len(stream.receive(timeout=DEADLINE))
    assert driver.closed["firehose"].wait(DEADLINE)


def test_end_of_data_reaches_the_driver_after_the_data(client: DriverClient, driver: Streams) -> None:
    """send_eof, then reading until the driver ends its side, is how a client knows that
    everything arrived (many rounds: small writes right before the end used to get lost)."""
    for _ in range(20):
        driver.recorded.clear()
        driver.closed["recorder"].clear()
        with client.stream("recorder") as stream:
            stream.send(b"reboot\n")
            stream.send_eof()
            assert list(stream) == []
        assert driver.closed["recorder"].wait(DEADLINE)
        assert driver.recorded == ["data", "eof"]


class AbandonedError(Exception):
    """The client gave up half way."""


def test_abandoned_stream_is_not_end_of_data(client: DriverClient, driver: Streams) -> None:
    """A client leaving with an error is not saying "that was everything" (a driver writing an
    image must not finish it)."""
    driver.recorded.clear()
    driver.recorder_got_data.clear()
    driver.closed["recorder"].clear()
    with pytest.raises(AbandonedError):
        with client.stream("recorder") as stream:
            stream.send(b"partial image")
            assert driver.recorder_got_data.wait(DEADLINE)
            raise AbandonedError
    assert driver.closed["recorder"].wait(DEADLINE)
    assert driver.recorded == ["data"]


def test_driver_ending_the_stream_gives_end_of_stream(client: DriverClient) -> None:
    with client.stream("goodbye") as stream:
        assert stream.receive(timeout=DEADLINE) == b"goodbye"
        with pytest.raises(anyio.EndOfStream):
            stream.receive(timeout=DEADLINE)
        with pytest.raises(anyio.EndOfStream):  # and stays ended
            stream.receive(timeout=DEADLINE)


def test_driver_failing_during_setup_raises_from_stream(client: DriverClient) -> None:
    with pytest.raises(TrackedDriverError, match="/dev/ttyUSB9 is gone"):
        with client.stream("broken"):
            pytest.fail("the stream must not open")


def test_driver_failing_after_a_checkpoint_during_setup(client: DriverClient) -> None:
    with pytest.raises(TimeoutError, match="did not answer"):
        with client.stream("slow_to_fail"):
            pytest.fail("the stream must not open")


@pytest.mark.anyio
async def test_async_stream_small_writes_intact() -> None:
    chunks = list(numbered_chunks(1024, 4096))
    async with serve_async(Streams()) as root, root.stream_async() as stream:
        received = bytearray()

        async def read_all() -> None:
            while True:
                try:
                    received.extend(await stream.receive())
                except anyio.EndOfStream:
                    return

        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_all)
                for chunk in chunks:
                    await stream.send(chunk)
                await stream.send_eof()
    assert bytes(received) == b"".join(chunks)


@pytest.mark.anyio
async def test_async_stream_setup_failure() -> None:
    async with serve_async(Streams()) as root:
        with pytest.raises(TrackedDriverError):
            async with root.stream_async("broken"):
                pytest.fail("the stream must not open")


@pytest.mark.anyio
async def test_async_stream_driver_end() -> None:
    async with serve_async(Streams()) as root, root.stream_async("goodbye") as stream:
        with anyio.fail_after(DEADLINE):
            assert await stream.receive() == b"goodbye"
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
