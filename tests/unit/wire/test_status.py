"""The one exception <-> status table: every row round-trips through a real driver call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from jumpstarter import errors
from jumpstarter.client import DriverClient
from jumpstarter.common.utils import serve, serve_async
from jumpstarter.driver import Driver, export
from jumpstarter.wire.status import STATUS_TABLE, code_for, rebuild, type_name

ROWS = [pytest.param(index, id=exc_type.__name__) for index, (exc_type, _) in enumerate(STATUS_TABLE)]


class FlashFailedError(errors.DriverError):
    """A driver's own failure type, importable by the client."""


class VendorSdkError(Exception):
    """An exception type that is not ours: the client must not rebuild it."""


class NeedsContextError(errors.DriverError):
    """One of ours, but its constructor wants more than a message."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(f"{message} (code {code})")


def message_for_row(index: int) -> str:
    return f"row {index} failed: détails ✓"


@dataclass(kw_only=True)
class Failing(Driver):
    """Raises whatever it is asked to."""

    @export
    def raise_row(self, index: int) -> None:
        raise STATUS_TABLE[index][0](message_for_row(index))

    @export
    async def raise_row_async(self, index: int) -> None:
        raise STATUS_TABLE[index][0](message_for_row(index))

    @export
    def raise_row_while_streaming(self, index: int) -> Iterator[int]:
        yield 1
        raise STATUS_TABLE[index][0](message_for_row(index))

    @export
    def flash(self) -> None:
        raise FlashFailedError("flash verification failed at 0x8000")

    @export
    def vendor(self) -> None:
        raise VendorSdkError("sdk exploded")

    @export
    def needs_context(self) -> None:
        raise NeedsContextError("bad", 7)

    @export
    def foreign_value_error(self) -> None:
        json.loads("{not json")

    @export
    def key_error(self) -> None:
        raise KeyError("missing-key")


@pytest.fixture(scope="module")
def client() -> Iterator[DriverClient]:
    with serve(Failing()) as root:
        yield root


@pytest.fixture
async def async_client() -> AsyncIterator[Any]:
    async with serve_async(Failing()) as root:
        yield root


@pytest.mark.parametrize("index", ROWS)
def test_table_row_round_trips_through_call(client: DriverClient, index: int) -> None:
    exc_type = STATUS_TABLE[index][0]
    with pytest.raises(exc_type) as info:
        client.call("raise_row", index)
    assert type(info.value) is exc_type
    assert str(info.value) == message_for_row(index)


@pytest.mark.parametrize("index", ROWS)
def test_table_row_round_trips_through_streamingcall(client: DriverClient, index: int) -> None:
    exc_type = STATUS_TABLE[index][0]
    received = []
    with pytest.raises(exc_type) as info:
        for item in client.streamingcall("raise_row_while_streaming", index):
            received.append(item)
    assert received == [1]
    assert type(info.value) is exc_type
    assert str(info.value) == message_for_row(index)


@pytest.mark.anyio
@pytest.mark.parametrize("index", ROWS)
async def test_table_row_round_trips_through_call_async(async_client: Any, index: int) -> None:
    exc_type = STATUS_TABLE[index][0]
    with pytest.raises(exc_type) as info:
        await async_client.call_async("raise_row_async", index)
    assert type(info.value) is exc_type
    assert str(info.value) == message_for_row(index)


@pytest.mark.parametrize(("exc_type", "code"), STATUS_TABLE, ids=[t.__name__ for t, _ in STATUS_TABLE])
def test_table_row_is_reachable(exc_type: type[BaseException], code: str) -> None:
    """No row is shadowed by an earlier row for a base class (first match wins)."""
    assert code_for(exc_type("x")) == code


def test_driver_error_subclass_comes_back_as_that_subclass(client: DriverClient) -> None:
    with pytest.raises(FlashFailedError, match="flash verification failed at 0x8000") as info:
        client.call("flash")
    assert type(info.value) is FlashFailedError


def test_foreign_exception_type_becomes_remote_error_naming_it(client: DriverClient) -> None:
    with pytest.raises(errors.RemoteError) as info:
        client.call("vendor")
    assert type(info.value) is errors.RemoteError
    assert info.value.remote_type == f"{__name__}:VendorSdkError"
    assert f"{__name__}.VendorSdkError" in str(info.value)
    assert "sdk exploded" in str(info.value)


def test_our_type_with_unusual_constructor_becomes_remote_error(client: DriverClient) -> None:
    with pytest.raises(errors.RemoteError) as info:
        client.call("needs_context")
    assert info.value.remote_type == type_name(NeedsContextError("bad", 7))
    assert "bad (code 7)" in str(info.value)


def test_foreign_subclass_of_a_table_type_comes_back_as_the_table_type(client: DriverClient) -> None:
    """json.JSONDecodeError is a ValueError from a module the client never rebuilds from."""
    with pytest.raises(errors.ArgumentError, match="Expecting property name"):
        client.call("foreign_value_error")


def test_builtin_exception_outside_the_table_is_rebuilt(client: DriverClient) -> None:
    with pytest.raises(KeyError) as info:
        client.call("key_error")
    assert info.value.args == ("missing-key",)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("NOT_FOUND", errors.DriverNotFoundError),
        ("INVALID_ARGUMENT", errors.ArgumentError),
        ("FAILED_PRECONDITION", errors.ExporterNotReadyError),
        ("UNAVAILABLE", errors.ConnectionLostError),
        ("UNIMPLEMENTED", NotImplementedError),
        ("DEADLINE_EXCEEDED", TimeoutError),
        ("UNKNOWN", errors.RemoteError),
        ("INTERNAL", errors.RemoteError),
        ("CANCELLED", errors.ConnectionLostError),
        ("DATA_LOSS", errors.RemoteError),
    ],
)
def test_peer_without_type_name_gets_the_table_type_for_the_code(code: str, expected: type) -> None:
    """Upstream peers send no `x-jmp-error`; the status code alone picks the type."""
    rebuilt = rebuild(code, "message text", None)
    assert type(rebuilt) is expected
    assert "message text" in str(rebuilt)


def test_type_name_is_never_imported_on_a_peers_say_so() -> None:
    rebuilt = rebuild("UNKNOWN", "boom", "some_module_nobody_imported:Evil")
    assert type(rebuilt) is errors.RemoteError
    assert "some_module_nobody_imported.Evil" in str(rebuilt)
