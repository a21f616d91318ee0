"""Every call style through the real gRPC path, from sync code and from async code."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import anyio
import pytest
from anyio.streams.stapled import StapledObjectStream

from jumpstarter.client import DriverClient
from jumpstarter.common.utils import serve, serve_async
from jumpstarter.driver import Driver, export, exportstream
from jumpstarter.errors import DriverNotFoundError, MethodNotFoundError

#: How long a test waits for something that should happen promptly.
DEADLINE = 10


@dataclass(kw_only=True)
class Calculator(Driver):
    """One method of every kind."""

    resets: int = 0
    generator_closed: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        self.resets += 1

    @export
    def add(self, a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @export
    async def add_async(self, a: int, b: int) -> int:
        await anyio.lowlevel.checkpoint()
        return a + b

    @export
    def count(self, n: int) -> Iterator[int]:
        try:
            yield from range(n)
        finally:
            self.generator_closed.set()

    @export
    async def count_async(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            await anyio.lowlevel.checkpoint()
            yield i

    @export
    def thread_name(self) -> str:
        return threading.current_thread().name

    @exportstream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        send, receive = anyio.create_memory_object_stream[bytes](16)
        async with send, receive:
            yield StapledObjectStream(send, receive)

    def not_exported(self) -> int:
        return 1

    @export
    def _private(self) -> int:
        return 2


@dataclass(kw_only=True)
class Board(Driver):
    """A composite: the calculator is a child."""

    @export
    def ping(self) -> str:
        return "pong"


@pytest.fixture(scope="module")
def calculator() -> Calculator:
    return Calculator()


@pytest.fixture(scope="module")
def client(calculator: Calculator) -> Iterator[DriverClient]:
    with serve(calculator) as root:
        yield root


@pytest.fixture
async def async_client() -> AsyncIterator[Any]:
    async with serve_async(Calculator()) as root:
        yield root


# ---- sync API --------------------------------------------------------------------------


def test_sync_unary_method(client: DriverClient) -> None:
    assert client.call("add", 2, 3) == 5


def test_async_unary_method(client: DriverClient) -> None:
    assert client.call("add_async", 2, 3) == 5


def test_sync_generator_method(client: DriverClient) -> None:
    assert list(client.streamingcall("count", 5)) == [0, 1, 2, 3, 4]


def test_async_generator_method(client: DriverClient) -> None:
    assert list(client.streamingcall("count_async", 5)) == [0, 1, 2, 3, 4]


def test_empty_generator(client: DriverClient) -> None:
    assert list(client.streamingcall("count", 0)) == []


def test_byte_stream(client: DriverClient) -> None:
    with client.stream() as stream:
        stream.send(b"hello")
        assert stream.receive(timeout=DEADLINE) == b"hello"


def test_sync_driver_methods_run_off_the_event_loop_thread(client: DriverClient) -> None:
    loop_thread = client.connection.portal.call(threading.current_thread).name
    assert client.call("thread_name") != loop_thread


def test_client_stopping_early_closes_the_driver_generator(
    client: DriverClient, calculator: Calculator
) -> None:
    calculator.generator_closed.clear()
    for item in client.streamingcall("count", 10**9):
        if item == 3:
            break
    assert calculator.generator_closed.wait(DEADLINE)
    assert client.call("add", 1, 1) == 2


def test_reset_calls_every_driver_reset(client: DriverClient, calculator: Calculator) -> None:
    before = calculator.resets
    client.reset()
    assert calculator.resets == before + 1


def test_hundred_concurrent_calls_from_threads(client: DriverClient) -> None:
    start = threading.Barrier(100, timeout=DEADLINE)

    def one(i: int) -> tuple[int, int, list[int]]:
        start.wait()
        return (
            i,
            client.call("add" if i % 2 else "add_async", i, 1000),
            list(client.streamingcall("count", i % 5)),
        )

    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(one, range(100)))
    assert results == [(i, i + 1000, list(range(i % 5))) for i in range(100)]


def test_children_are_attributes_and_reachable() -> None:
    with serve(Board(children={"calc": Calculator()})) as root:
        assert root.call("ping") == "pong"
        assert root.calc.call("add", 1, 2) == 3
        assert root.calc.name == "calc"
        assert root.calc.methods_description["add"] == "Add two numbers."
        with pytest.raises(AttributeError, match="nope"):
            _ = root.nope


# ---- lookups that fail -----------------------------------------------------------------


def stranger(client: DriverClient) -> DriverClient:
    """A client for a driver UUID the exporter does not have, on the same connection."""
    return DriverClient(uuid=str(uuid4()), connection=client.connection)


def test_unknown_driver_uuid(client: DriverClient) -> None:
    with pytest.raises(DriverNotFoundError, match="no driver instance"):
        stranger(client).call("add", 1, 2)


def test_unknown_driver_uuid_streaming(client: DriverClient) -> None:
    with pytest.raises(DriverNotFoundError):
        list(stranger(client).streamingcall("count", 1))


def test_unknown_driver_uuid_stream(client: DriverClient) -> None:
    with pytest.raises(DriverNotFoundError):
        with stranger(client).stream():
            pass


@pytest.mark.parametrize("method", ["no_such_method", "not_exported", "_private", "__init__", "reset", ""])
def test_method_not_callable_remotely(client: DriverClient, method: str) -> None:
    with pytest.raises(MethodNotFoundError):
        client.call(method)


def test_unknown_method_streaming(client: DriverClient) -> None:
    with pytest.raises(MethodNotFoundError, match="no_such_method"):
        list(client.streamingcall("no_such_method"))


def test_unknown_method_stream(client: DriverClient) -> None:
    with pytest.raises(MethodNotFoundError, match="no_such_method"):
        with client.stream("no_such_method"):
            pass


@pytest.mark.parametrize(
    ("style", "method", "hint"),
    [
        ("call", "count", "streamingcall()"),
        ("call", "connect", "stream()"),
        ("streamingcall", "add", "call()"),
        ("streamingcall", "connect", "stream()"),
        ("stream", "add", "call()"),
        ("stream", "count", "streamingcall()"),
    ],
)
def test_wrong_call_style_says_which_to_use(client: DriverClient, style: str, method: str, hint: str) -> None:
    with pytest.raises(MethodNotFoundError) as info:
        if style == "call":
            client.call(method, 1)
        elif style == "streamingcall":
            list(client.streamingcall(method, 1))
        else:
            with client.stream(method):
                pass
    assert method in str(info.value)
    assert hint in str(info.value)


# ---- async API -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_call_async_sync_and_async_methods(async_client: Any) -> None:
    assert await async_client.call_async("add", 40, 2) == 42
    assert await async_client.call_async("add_async", 40, 2) == 42


@pytest.mark.anyio
async def test_streamingcall_async(async_client: Any) -> None:
    assert [i async for i in async_client.streamingcall_async("count", 3)] == [0, 1, 2]
    assert [i async for i in async_client.streamingcall_async("count_async", 3)] == [0, 1, 2]


@pytest.mark.anyio
async def test_stream_async(async_client: Any) -> None:
    async with async_client.stream_async() as stream:
        await stream.send(b"ping")
        with anyio.fail_after(DEADLINE):
            assert await stream.receive() == b"ping"


@pytest.mark.anyio
async def test_async_errors_map_like_sync_ones(async_client: Any) -> None:
    with pytest.raises(MethodNotFoundError, match=r"streamingcall\(\)"):
        await async_client.call_async("count", 1)
    with pytest.raises(DriverNotFoundError):
        await DriverClient(uuid=str(uuid4()), connection=async_client.connection).call_async("add", 1, 2)


@pytest.mark.anyio
async def test_concurrent_async_calls(async_client: Any) -> None:
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await async_client.call_async("add_async", i, i)

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(one, i)
    assert results == {i: 2 * i for i in range(100)}


@pytest.mark.anyio
async def test_reset_async() -> None:
    calculator = Calculator()
    async with serve_async(calculator) as root:
        assert calculator.resets == 1  # the session resets drivers on entry
        await root.reset_async()
        assert calculator.resets == 2


@pytest.mark.anyio
async def test_sync_methods_refuse_to_block_the_loop_serving_them(async_client: Any) -> None:
    with pytest.raises(RuntimeError, match="call_async"):
        async_client.call("add", 1, 2)
