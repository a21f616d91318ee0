"""Shared pytest configuration."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, the loop `serve_async` and grpc.aio live on."""
    return "asyncio"
