"""Values through the wire: the tagged dialect keeps Python types across a real driver call, the
plain (upstream) dialect gives ordinary JSON."""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Any

import pydantic
import pytest

from jumpstarter.client import DriverClient
from jumpstarter.common.utils import serve, serve_async
from jumpstarter.driver import Driver, export
from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb
from jumpstarter.wire.values import TAG, decode, encode, rebuild_model, to_type


@dataclass
class Point:
    """A dataclass the client has imported."""

    x: int
    y: float
    tags: list[str] = field(default_factory=list)


class Board(pydantic.BaseModel):
    """A pydantic model the client has imported."""

    name: str
    cores: int
    serial: bytes | None = None


@dataclass(kw_only=True)
class Echo(Driver):
    """Returns what it is given, and says what type its arguments arrived as."""

    @export
    def echo(self, value: Any) -> Any:
        return value

    @export
    async def echo_async(self, value: Any) -> Any:
        return value

    @export
    def echo_each(self, values: list[Any]) -> Iterator[Any]:
        yield from values

    @export
    def point(self) -> Point:
        return Point(1, 2.0, ["a"])

    @export
    def board(self, serial: bytes) -> Board:
        return Board(name="rpi", cores=4, serial=serial)

    @export
    def point_arrival(self, point: Point) -> list[Any]:
        return [type(point).__qualname__, point.x, point.y]

    @export
    def board_arrival(self, board: Board) -> list[Any]:
        return [type(board).__qualname__, board.name, board.cores]

    @export
    def bytes_arrival(self, data: bytes) -> list[Any]:
        return [type(data).__qualname__, len(data)]


@pytest.fixture(scope="module")
def client() -> Iterator[DriverClient]:
    with serve(Echo()) as root:
        yield root


def assert_same(actual: Any, expected: Any) -> None:
    """Equal, and of exactly the same types all the way down (1 == 1.0 == True is not enough)."""
    assert type(actual) is type(expected), f"{actual!r} is {type(actual)}, expected {type(expected)}"
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_same(a, e)
    elif isinstance(expected, dict):
        assert sorted(actual) == sorted(expected)  # a protobuf Struct does not keep key order
        for key in expected:
            assert_same(actual[key], expected[key])
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual)
    elif isinstance(expected, float):
        assert (actual, math.copysign(1, actual)) == (expected, math.copysign(1, expected))
    else:
        assert actual == expected


ROUND_TRIPS = [
    pytest.param(0, id="zero"),
    pytest.param(42, id="int"),
    pytest.param(-7, id="negative-int"),
    pytest.param(2**53, id="int-2**53"),
    pytest.param(2**53 + 1, id="int-above-2**53"),
    pytest.param(-(2**63), id="int-min-int64"),
    pytest.param(2**100, id="int-huge"),
    pytest.param(2.0, id="integral-float"),
    pytest.param(0.1, id="float"),
    pytest.param(-0.0, id="negative-zero"),
    pytest.param(1e300, id="float-large"),
    pytest.param(float("inf"), id="float-inf"),
    pytest.param(b"", id="bytes-empty"),
    pytest.param(b"plain ascii", id="bytes-ascii"),
    pytest.param(bytes(range(256)), id="bytes-not-utf8"),
    pytest.param(None, id="none"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param("", id="str-empty"),
    pytest.param("héllo ✓", id="str-unicode"),
    pytest.param([], id="list-empty"),
    pytest.param({}, id="dict-empty"),
    pytest.param([1, [2.0, [b"\x80", None]]], id="nested-lists"),
    pytest.param({"a": {"b": [1, 2.5, True], "c": {"d": b"\xff"}}}, id="nested-dicts"),
    pytest.param((1, "two", 3.0, b"\x04"), id="tuple"),
    pytest.param((), id="tuple-empty"),
    pytest.param([(1, 2), {"t": (3,)}], id="tuples-nested"),
    pytest.param({"$jmp": 1}, id="dict-with-tag-key"),
    pytest.param({"$jmp": "bytes", "v": "AAEC"}, id="dict-that-looks-tagged"),
    pytest.param({"$jmp": "dict", "v": {"$jmp": "int", "v": "5"}}, id="dict-tag-key-nested"),
    pytest.param({"outer": {"$jmp": 2.0, "x": b"y"}}, id="dict-tag-key-inside"),
]


@pytest.mark.parametrize("value", ROUND_TRIPS)
def test_value_round_trips_through_a_sync_method(client: DriverClient, value: Any) -> None:
    assert_same(client.call("echo", value), value)


@pytest.mark.parametrize("value", ROUND_TRIPS)
def test_value_round_trips_through_an_async_method(client: DriverClient, value: Any) -> None:
    assert_same(client.call("echo_async", value), value)


def test_values_round_trip_through_a_generator(client: DriverClient) -> None:
    values = [param.values[0] for param in ROUND_TRIPS]
    assert_same(list(client.streamingcall("echo_each", values)), values)


@pytest.mark.anyio
async def test_values_round_trip_through_the_async_client() -> None:
    values = [param.values[0] for param in ROUND_TRIPS]
    async with serve_async(Echo()) as root:
        assert_same(await root.call_async("echo", values), values)
        assert_same([v async for v in root.streamingcall_async("echo_each", values)], values)


def test_nan_round_trips(client: DriverClient) -> None:
    assert_same(client.call("echo", float("nan")), float("nan"))


def test_bytes_argument_arrives_as_bytes(client: DriverClient) -> None:
    assert_same(client.call("bytes_arrival", b"\xff\xfe"), ["bytes", 2])


def test_dataclass_returned_by_driver_comes_back_as_that_class(client: DriverClient) -> None:
    assert_same(client.call("point"), Point(1, 2.0, ["a"]))


def test_pydantic_model_returned_by_driver_comes_back_as_that_model(client: DriverClient) -> None:
    board = client.call("board", b"0042")
    assert type(board) is Board
    assert board == Board(name="rpi", cores=4, serial=b"0042")


def test_pydantic_model_with_non_utf8_bytes_comes_back(client: DriverClient) -> None:
    board = client.call("board", b"\x00\xff")
    assert board == Board(name="rpi", cores=4, serial=b"\x00\xff")


def test_models_inside_containers_keep_their_types(client: DriverClient) -> None:
    value = {"points": [Point(1, 1.0), Point(2, 2.5)], "board": Board(name="x", cores=1)}
    result = client.call("echo", value)
    assert_same(result["points"], [Point(1, 1.0), Point(2, 2.5)])
    assert type(result["board"]) is Board and result["board"] == value["board"]


@pytest.mark.parametrize("argument", [Point(3, 4.5), {"x": 3, "y": 4.5}], ids=["dataclass", "plain-dict"])
def test_argument_annotated_as_dataclass_arrives_as_that_dataclass(
    client: DriverClient, argument: Any
) -> None:
    assert_same(client.call("point_arrival", argument), ["Point", 3, 4.5])


@pytest.mark.parametrize(
    "argument", [Board(name="imx", cores=2), {"name": "imx", "cores": 2}], ids=["model", "plain-dict"]
)
def test_argument_annotated_as_pydantic_model_arrives_as_that_model(
    client: DriverClient, argument: Any
) -> None:
    assert_same(client.call("board_arrival", argument), ["Board", "imx", 2])


def test_plain_dialect_peer_gets_plain_json(client: DriverClient) -> None:
    """A peer that does not announce the tagged dialect (an upstream client) gets plain JSON."""
    request = pb.DriverCallRequest(
        uuid=client.uuid, method="echo", args=[encode({"data": b"abc", "n": 2**60, "f": 2.0}, tagged=False)]
    )
    import grpc

    from jumpstarter.protocol.v1 import jumpstarter_pb2_grpc

    # a bare channel: no jumpstarter-codec user agent, like an upstream client
    with grpc.insecure_channel(client.connection.target) as channel:
        response = jumpstarter_pb2_grpc.ExporterServiceStub(channel).DriverCall(request)
    assert response.result.WhichOneof("kind") == "struct_value"
    fields = response.result.struct_value.fields
    assert fields["data"].string_value == "abc"
    assert fields["n"].number_value == float(2**60)
    assert fields["f"].number_value == 2.0


def test_plain_dialect_peer_can_send_a_model_as_an_object(client: DriverClient) -> None:
    request = pb.DriverCallRequest(
        uuid=client.uuid, method="board_arrival", args=[encode({"name": "n", "cores": 8}, tagged=False)]
    )
    response = client.connection.driver_call()(request)
    assert decode(response.result, tagged=False) == ["Board", "n", 8]


# ---- the plain dialect, value by value ------------------------------------------------------


class Color(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (5, "number_value", 5.0),
        (2.0, "number_value", 2.0),
        (2**60, "number_value", float(2**60)),
        (True, "bool_value", True),
        ("text", "string_value", "text"),
        (b"utf-8 text", "string_value", "utf-8 text"),
        (b"\xff\x00", "string_value", "/wA="),
        (Color.RED, "string_value", "red"),
        (uuid.UUID(int=1), "string_value", "00000000-0000-0000-0000-000000000001"),
        (PurePosixPath("/dev/ttyUSB0"), "string_value", "/dev/ttyUSB0"),
        (date(2024, 5, 1), "string_value", "2024-05-01"),
        (datetime(2024, 5, 1, 12, 30), "string_value", "2024-05-01T12:30:00"),
    ],
)
def test_plain_dialect_gives_json_scalars(value: Any, kind: str, expected: Any) -> None:
    encoded = encode(value, tagged=False)
    assert encoded.WhichOneof("kind") == kind
    assert getattr(encoded, kind) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ((1, 2), [1, 2]),
        ({"$jmp": 1}, {"$jmp": 1}),
        (Point(1, 2.5, ["t"]), {"x": 1, "y": 2.5, "tags": ["t"]}),
        (Board(name="b", cores=2), {"name": "b", "cores": 2, "serial": None}),
        (None, None),
    ],
    ids=["tuple-as-list", "tag-key-untouched", "dataclass-as-object", "model-as-object", "null"],
)
def test_plain_dialect_gives_json_containers(value: Any, expected: Any) -> None:
    assert_same(decode(encode(value, tagged=False), tagged=False), expected)


def test_plain_dialect_decodes_integral_numbers_as_ints() -> None:
    assert_same(decode(encode(3.0, tagged=False), tagged=False), 3)
    assert_same(decode(encode(3.5, tagged=False), tagged=False), 3.5)


def test_tagged_dialect_keeps_ordinary_ints_plain() -> None:
    """Common values cost nothing extra: small ints and strings are not wrapped."""
    assert encode(7, tagged=True).WhichOneof("kind") == "number_value"
    assert encode("s", tagged=True).WhichOneof("kind") == "string_value"
    assert encode(2.0, tagged=True).struct_value.fields[TAG].string_value == "float"


def test_unsupported_type_is_refused_with_its_name() -> None:
    with pytest.raises(TypeError, match="object"):
        encode(object(), tagged=True)


def test_model_of_a_module_not_imported_stays_a_dict() -> None:
    assert rebuild_model("not_imported_anywhere.models:Thing", {"a": 1}) == {"a": 1}


@pytest.mark.parametrize(
    ("data", "annotation", "expected"),
    [
        ("abc", bytes, b"abc"),
        (2.0, int, 2),
        (2, float, 2.0),
        ({"x": 1, "y": 2.0}, Point, Point(1, 2.0)),
        ("unchanged", Any, "unchanged"),
        ([1], list[int], [1]),
    ],
)
def test_to_type_converts_to_declared_types(data: Any, annotation: Any, expected: Any) -> None:
    assert_same(to_type(data, annotation), expected)
