"""Encoding of values and errors on the wire (the only place outside the servicers that touches
protobuf value types and gRPC status codes)."""
