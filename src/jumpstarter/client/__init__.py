"""Client side: driver clients, the client tree, and connecting to exporters."""

from jumpstarter.client.base import BlockingStream, DriverClient, StubDriverClient
from jumpstarter.client.client import client_from_path, client_from_path_async
from jumpstarter.client.core import AsyncDriverClient

__all__ = [
    "AsyncDriverClient",
    "BlockingStream",
    "DriverClient",
    "StubDriverClient",
    "client_from_path",
    "client_from_path_async",
]
