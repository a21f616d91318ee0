"""Network drivers: a byte stream (`connect`) to a TCP, UDP or unix-socket endpoint reachable
from the exporter."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio

from jumpstarter.driver import Driver, exportstream


class NetworkInterface(metaclass=ABCMeta):
    """A driver whose `connect` stream reaches a network endpoint."""

    driver_type: ClassVar[str] = "network"

    @classmethod
    def client(cls) -> str:
        """Dotted path of `NetworkClient`."""
        return "jumpstarter_driver_network.client.NetworkClient"

    @abstractmethod
    def connect(self) -> Any:
        """An async context manager yielding a byte stream to the endpoint."""


def _check_host_port(driver: Any) -> None:
    name = type(driver).__name__
    if not isinstance(driver.host, str) or not driver.host:
        raise TypeError(f"{name} config host: expected a host name or address, got {driver.host!r}")
    port = driver.port
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{name} config port: expected an integer, got {port!r}")
    if not 0 < port < 65536:
        raise ValueError(f"{name} config port: must be between 1 and 65535, got {port}")


def _unreachable(exc: OSError, what: str) -> OSError:
    """The connection error to report: the same kind, naming what was unreachable."""
    # anyio.connect_tcp raises "All connection attempts failed" from the attempt's error (or a group)
    cause = exc.__cause__
    attempts = cause.exceptions if isinstance(cause, BaseExceptionGroup) else (cause,)
    failures = [e for e in attempts if isinstance(e, OSError)]
    if failures:
        exc = failures[-1]
    reason = exc.strerror or str(exc)
    kind = type(exc) if isinstance(exc, ConnectionError) else ConnectionError
    return kind(f"cannot connect to {what}: {reason}")


@dataclass(kw_only=True)
class TcpNetwork(NetworkInterface, Driver):
    """A TCP connection to `host`:`port`, opened from the exporter for every `connect` stream."""

    host: str
    port: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_host_port(self)

    @exportstream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        """A byte stream to the TCP endpoint."""
        self.logger.debug("connecting to tcp %s:%d", self.host, self.port)
        try:
            stream = await anyio.connect_tcp(self.host, self.port)
        except OSError as exc:
            raise _unreachable(exc, f"tcp {self.host}:{self.port}") from None
        async with stream:
            yield stream


@dataclass(kw_only=True)
class UdpNetwork(NetworkInterface, Driver):
    """A connected UDP socket to `host`:`port`: each chunk sent is one datagram, each datagram
    received is one chunk."""

    host: str
    port: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_host_port(self)

    @exportstream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        """A datagram stream to the UDP endpoint."""
        self.logger.debug("connecting to udp %s:%d", self.host, self.port)
        try:
            stream = await anyio.create_connected_udp_socket(self.host, self.port)
        except OSError as exc:
            raise _unreachable(exc, f"udp {self.host}:{self.port}") from None
        async with stream:
            yield stream


@dataclass(kw_only=True)
class UnixNetwork(NetworkInterface, Driver):
    """A connection to the unix socket at `path` on the exporter."""

    path: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.path, str) or not self.path:
            raise TypeError(f"UnixNetwork config path: expected a socket path, got {self.path!r}")

    @exportstream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        """A byte stream to the unix socket."""
        self.logger.debug("connecting to unix socket %s", self.path)
        try:
            stream = await anyio.connect_unix(self.path)
        except OSError as exc:
            raise _unreachable(exc, f"unix socket {self.path}") from None
        async with stream:
            yield stream


@dataclass(kw_only=True)
class EchoNetwork(NetworkInterface, Driver):
    """A stand-in endpoint that sends back whatever it receives (for trying adapters and tests)."""

    @exportstream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        """A stream echoing every chunk."""
        from anyio.streams.stapled import StapledObjectStream

        send, receive = anyio.create_memory_object_stream[bytes](32)
        async with StapledObjectStream(send, receive) as stream:
            yield stream
