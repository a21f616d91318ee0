"""Talking to a controller with a client, exporter or admin config: TLS channel, bearer token,
errors rebuilt from statuses. Sync stubs for the CLI, aio channels for the exporter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from jumpstarter.config.client import ClientConfig
from jumpstarter.config.exporter import ExporterConfig
from jumpstarter.errors import ConfigurationError, ConnectionLostError

T = TypeVar("T")

#: Client side of the keepalive the controller expects.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


def channel_parts(config: ClientConfig | ExporterConfig) -> tuple[str, Any, tuple[tuple[str, Any], ...]]:
    """(target, channel credentials, options) for the controller named in a config."""
    import grpc

    if not config.endpoint:
        raise ConfigurationError("the config has no controller endpoint (`endpoint: HOST:PORT`)")
    if not config.token:
        raise ConfigurationError("the config has no token (`token:`); get one with `jmp admin create`")
    if config.tls.insecure:
        raise ConfigurationError("`tls.insecure` is not supported for controllers: give `tls.ca` instead")
    roots = config.tls.ca.encode() if config.tls.ca else None
    return config.endpoint, grpc.ssl_channel_credentials(root_certificates=roots), CHANNEL_OPTIONS


def auth_metadata(config: ClientConfig | ExporterConfig) -> tuple[tuple[str, str], ...]:
    """Metadata sent with every controller call (upstream's names)."""
    kind = "Exporter" if isinstance(config, ExporterConfig) else "Client"
    metadata = [("authorization", f"Bearer {config.token}"), ("jumpstarter-kind", kind)]
    if config.metadata.namespace:
        metadata.append(("jumpstarter-namespace", config.metadata.namespace))
    if config.metadata.name:
        metadata.append(("jumpstarter-name", config.metadata.name))
    return tuple(metadata)


def translate(exc: BaseException, endpoint: str) -> BaseException:
    """The exception to raise for a failed controller call."""
    import grpc

    from jumpstarter.wire import status

    if not isinstance(exc, grpc.RpcError):
        return exc
    rpc: Any = exc
    code = rpc.code()
    details = rpc.details() or ""
    remote_type = next((v for k, v in rpc.trailing_metadata() or () if k == status.ERROR_TYPE_KEY), None)
    if remote_type is None and code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return ConnectionLostError(f"cannot reach the controller at {endpoint}: {details}")
    return status.rebuild(code.name, details, remote_type)


class ControllerClient:
    """Blocking calls to a controller's services with one config's credentials."""

    def __init__(self, config: ClientConfig | ExporterConfig, timeout: float = 30.0) -> None:
        import grpc

        target, creds, options = channel_parts(config)
        self.config = config
        self.endpoint = target
        self.channel = grpc.secure_channel(target, creds, options=options)
        self.metadata = auth_metadata(config)
        self.timeout = timeout

    def call(self, method: Callable[..., T], request: Any) -> T:
        """Call a stub method; raise our exception types on failure."""
        try:
            return method(request, metadata=self.metadata, timeout=self.timeout)
        except Exception as exc:
            raise translate(exc, self.endpoint) from None

    def client_stub(self) -> Any:
        """A `jumpstarter.client.v1.ClientService` stub."""
        from jumpstarter.protocol.client.v1 import client_pb2_grpc

        return client_pb2_grpc.ClientServiceStub(self.channel)

    def admin_stub(self) -> Any:
        """A `jumpstarter.admin.v1.AdminService` stub."""
        from jumpstarter.protocol.admin.v1 import admin_pb2_grpc

        return admin_pb2_grpc.AdminServiceStub(self.channel)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> ControllerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
