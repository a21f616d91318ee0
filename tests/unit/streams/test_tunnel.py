"""Router frames as the tunnel reads them: our fast decoder against protobuf's encoding."""

from __future__ import annotations

import pytest

from jumpstarter.protocol.v1 import router_pb2
from jumpstarter.streams.tunnel import GOAWAY_FRAME, decode

DATA, PING, GOAWAY, RST = (router_pb2.FRAME_TYPE_DATA, router_pb2.FRAME_TYPE_PING, router_pb2.FRAME_TYPE_GOAWAY,
                           router_pb2.FRAME_TYPE_RST_STREAM)


@pytest.mark.parametrize(
    ("kind", "payload"),
    [(DATA, b"x"), (DATA, b""), (DATA, b"\x80" * 300), (DATA, bytes(range(256)) * 4096), (PING, b"ack"),
     (GOAWAY, b""), (RST, b"")],
)
def test_decode_matches_protobuf(kind: int, payload: bytes) -> None:
    message = router_pb2.StreamResponse(payload=payload, frame_type=kind).SerializeToString()  # type: ignore[arg-type]
    found_kind, found_payload = decode(message)
    assert (found_kind, bytes(found_payload)) == (kind, payload)


def test_decode_falls_back_to_protobuf_for_unusual_encodings() -> None:
    # fields in reverse order and an unknown field (number 9) as another peer might send them
    message = b"\x10\x06" + b"\x0a\x02hi" + b"\x48\x01"
    kind, payload = decode(message)
    assert (kind, bytes(payload)) == (PING, b"hi")


def test_goaway_frame_is_what_protobuf_makes() -> None:
    assert router_pb2.StreamRequest.FromString(GOAWAY_FRAME).frame_type == GOAWAY
