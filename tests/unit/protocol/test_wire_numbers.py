"""Facts of the wire format that peers (upstream Jumpstarter, the Go controller) depend on.

Field numbers and enum values must never change; these tests read them from the generated
descriptors, so an edit to proto/ that renumbers anything fails here."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor

from jumpstarter.exporter.logging import LogSource
from jumpstarter.exporter.status import ExporterStatus
from jumpstarter.protocol.v1 import common_pb2, jumpstarter_pb2, router_pb2

FIELDS: list[tuple[Descriptor, dict[str, int]]] = [
    (jumpstarter_pb2.DriverCallRequest.DESCRIPTOR, {"uuid": 1, "method": 2, "args": 3}),
    (jumpstarter_pb2.DriverCallResponse.DESCRIPTOR, {"uuid": 1, "result": 2}),
    (jumpstarter_pb2.StreamingDriverCallRequest.DESCRIPTOR, {"uuid": 1, "method": 2, "args": 3}),
    (
        jumpstarter_pb2.GetStatusResponse.DESCRIPTOR,
        {"status": 1, "message": 2, "status_version": 3, "previous_status": 4},
    ),
    (
        jumpstarter_pb2.LogStreamResponse.DESCRIPTOR,
        {
            "uuid": 1,
            "severity": 2,
            "message": 3,
            "source": 4,
            "driver_type": 5,
            "operation": 6,
            "timestamp": 7,
            "structured_fields": 8,
        },
    ),
    (
        jumpstarter_pb2.DriverInstanceReport.DESCRIPTOR,
        {"uuid": 1, "parent_uuid": 2, "labels": 3, "description": 4, "methods_description": 5},
    ),
    (jumpstarter_pb2.EndSessionResponse.DESCRIPTOR, {"success": 1, "message": 2}),
    (router_pb2.StreamRequest.DESCRIPTOR, {"payload": 1, "frame_type": 2}),
    (router_pb2.StreamResponse.DESCRIPTOR, {"payload": 1, "frame_type": 2}),
]


@pytest.mark.parametrize(("message", "numbers"), FIELDS, ids=[m.name for m, _ in FIELDS])
def test_field_numbers(message: Descriptor, numbers: dict[str, int]) -> None:
    assert {name: message.fields_by_name[name].number for name in numbers} == numbers


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (jumpstarter_pb2.GetStatusResponse.DESCRIPTOR, "previous_status"),
        (jumpstarter_pb2.LogStreamResponse.DESCRIPTOR, "source"),
        (jumpstarter_pb2.DriverInstanceReport.DESCRIPTOR, "parent_uuid"),
    ],
)
def test_optional_fields_track_presence(message: Descriptor, field: str) -> None:
    assert message.fields_by_name[field].has_presence


def enum_values(descriptor: EnumDescriptor) -> dict[str, int]:
    return {value.name: value.number for value in descriptor.values}


def test_frame_types() -> None:
    assert enum_values(router_pb2.DESCRIPTOR.enum_types_by_name["FrameType"]) == {
        "FRAME_TYPE_DATA": 0,
        "FRAME_TYPE_RST_STREAM": 3,
        "FRAME_TYPE_PING": 6,
        "FRAME_TYPE_GOAWAY": 7,
    }


def test_exporter_status_enum_matches_the_state_machine() -> None:
    values = enum_values(common_pb2.DESCRIPTOR.enum_types_by_name["ExporterStatus"])
    assert values == {f"EXPORTER_STATUS_{s.name}": int(s) for s in ExporterStatus}


def test_log_source_enum_matches_the_exporter() -> None:
    values = enum_values(common_pb2.DESCRIPTOR.enum_types_by_name["LogSource"])
    assert values == {f"LOG_SOURCE_{s.name}": int(s) for s in LogSource}


def test_package_and_services() -> None:
    assert jumpstarter_pb2.DESCRIPTOR.package == "jumpstarter.v1"
    services = jumpstarter_pb2.DESCRIPTOR.services_by_name
    assert set(services["ExporterService"].methods_by_name) == {
        "GetReport",
        "DriverCall",
        "StreamingDriverCall",
        "LogStream",
        "Reset",
        "GetStatus",
        "EndSession",
    }
    assert set(router_pb2.DESCRIPTOR.services_by_name["RouterService"].methods_by_name) == {"Stream"}
