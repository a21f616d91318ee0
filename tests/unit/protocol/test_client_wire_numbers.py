"""`jumpstarter.client.v1` field numbers match upstream's published client.proto (upstream clients
talk to our controller), and the service carries upstream's method names."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor

from jumpstarter.protocol.client.v1 import client_pb2

FIELDS: list[tuple[Descriptor, dict[str, int]]] = [
    (client_pb2.Exporter.DESCRIPTOR, {"name": 1, "labels": 2, "online": 3, "status": 4, "status_message": 5,
                                      "enabled": 6, "deprecated_labels": 7}),
    (client_pb2.Lease.DESCRIPTOR, {
        "name": 1, "selector": 2, "duration": 3, "effective_duration": 4, "begin_time": 5,
        "effective_begin_time": 6, "end_time": 7, "effective_end_time": 8, "client": 9, "exporter": 10,
        "conditions": 11, "exporter_name": 12, "tags": 13, "allow_disabled": 14, "context": 15,
        "deprecated_labels": 16, "shared_with": 17, "effective_shared_with": 18,
    }),
    (client_pb2.ListExportersRequest.DESCRIPTOR, {"parent": 1, "page_size": 2, "page_token": 3, "filter": 4,
                                                  "show_hidden_labels": 5}),
    (client_pb2.ListLeasesRequest.DESCRIPTOR, {"parent": 1, "page_size": 2, "page_token": 3, "filter": 4,
                                               "only_active": 5, "tag_filter": 6}),
    (client_pb2.CreateLeaseRequest.DESCRIPTOR, {"parent": 1, "lease_id": 2, "lease": 3}),
    (client_pb2.UpdateLeaseRequest.DESCRIPTOR, {"lease": 1, "update_mask": 2, "add_shared_with": 4,
                                                "remove_shared_with": 5}),
    (client_pb2.RotateTokenResponse.DESCRIPTOR, {"token": 1, "expiry": 2}),
]


@pytest.mark.parametrize(("descriptor", "numbers"), FIELDS, ids=[d.full_name for d, _ in FIELDS])
def test_field_numbers(descriptor: Descriptor, numbers: dict[str, int]) -> None:
    assert {f.name: f.number for f in descriptor.fields} == numbers


def test_service_methods() -> None:
    service = client_pb2.DESCRIPTOR.services_by_name["ClientService"]
    assert service.full_name == "jumpstarter.client.v1.ClientService"
    assert {m.name for m in service.methods} == {
        "GetExporter", "ListExporters", "GetLease", "ListLeases", "CreateLease", "UpdateLease", "DeleteLease",
        "RotateToken",
    }
