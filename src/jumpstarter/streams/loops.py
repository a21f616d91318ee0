"""The event loop of processes that relay routed connections (router, controlled exporter, the
client side of `jmp shell --lease`): uvloop when it is installed.

Every routed message crosses grpc.aio's hand-off from its poller thread to the event loop in
three processes, and a call is a chain of such hand-offs; uvloop's cheaper loop iterations cut
routed unary calls by ~10 % (bench/RESULTS.md). `JUMPSTARTER_UVLOOP=0` keeps asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Set to 0 to use asyncio's default event loop instead of uvloop.
ENV = "JUMPSTARTER_UVLOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None (asyncio's default) when it is missing or switched off."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the relaying loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def anyio_options() -> dict[str, Any]:
    """`backend_options` for `anyio.run` and `start_blocking_portal` on the asyncio backend."""
    factory = loop_factory()
    return {} if factory is None else {"loop_factory": factory}
