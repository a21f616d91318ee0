"""gRPC channel and server options shared by every connection we make or serve: frames up to
16 MiB, and keepalives that notice a dead peer within seconds."""

from __future__ import annotations

from typing import Any

#: Options for both ends of exporter connections (local, direct, tunnelled).
GRPC_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", 16 << 20),
    ("grpc.max_send_message_length", 16 << 20),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
)

#: Options of channels to routers: the same, reconnecting quickly to a router that comes back.
ROUTER_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    *[(key, value) for key, value in GRPC_OPTIONS if key != "grpc.http2.min_ping_interval_without_data_ms"],
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)
