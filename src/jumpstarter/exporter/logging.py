"""Forward driver and exporter log records to clients through LogStream.

`emit` runs on whatever thread logged; it only appends the record to each subscriber's queue
(hopping onto the event loop only when called from another thread), so logging stays cheap on the
call path. Formatting happens in the LogStream sender.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from enum import IntEnum


class LogSource(IntEnum):
    """Mirrors `jumpstarter.v1.LogSource`."""

    UNSPECIFIED = 0
    DRIVER = 1
    BEFORE_LEASE_HOOK = 2
    AFTER_LEASE_HOOK = 3
    SYSTEM = 4


#: Logger name prefixes whose records are forwarded (besides records carrying a driver UUID).
FORWARDED_PREFIXES = ("driver.", "jumpstarter_driver", "jumpstarter.exporter", "jumpstarter.hooks")
QUEUE_LIMIT = 10_000


class LogBroadcaster(logging.Handler):
    """A logging handler fanning records out to LogStream subscribers of one session."""

    def __init__(self, driver_uuids: Collection[str]) -> None:
        super().__init__(logging.DEBUG)
        self._uuids = frozenset(driver_uuids)
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, deque[logging.LogRecord], asyncio.Event]] = []
        self._loop_thread: threading.Thread | None = None
        self.dropped = 0
        self._lease_history: deque[logging.LogRecord] = deque(maxlen=1000)

    def wants(self, record: logging.LogRecord) -> bool:
        """Whether a record belongs to this session."""
        uuid = getattr(record, "jmp_uuid", None)
        if uuid is not None:
            return uuid in self._uuids
        return record.name.startswith(FORWARDED_PREFIXES) or hasattr(record, "jmp_source")

    def start_lease(self) -> None:
        """Forget the previous lease's beforeLease output (kept for late subscribers)."""
        self._lease_history.clear()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "jmp_source", None) == LogSource.BEFORE_LEASE_HOOK and self.wants(record):
            # a client's log stream usually opens after the beforeLease hook ran (its first call
            # started the lease): keep that output for it
            self._lease_history.append(record)
        if not self._subscribers or not self.wants(record):
            return
        for loop, queue, ready in self._subscribers:
            if len(queue) >= QUEUE_LIMIT:
                self.dropped += 1
                continue
            queue.append(record)
            if not ready.is_set():
                if threading.current_thread() is self._loop_thread:
                    ready.set()
                else:
                    loop.call_soon_threadsafe(ready.set)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[logging.LogRecord]]:
        """Subscribe to records logged from now on."""
        loop = asyncio.get_running_loop()
        self._loop_thread = threading.current_thread()
        queue: deque[logging.LogRecord] = deque(self._lease_history)
        ready = asyncio.Event()
        if queue:
            ready.set()
        entry = (loop, queue, ready)
        self._subscribers = [*self._subscribers, entry]

        async def records() -> AsyncIterator[logging.LogRecord]:
            while True:
                await ready.wait()
                ready.clear()
                while queue:
                    yield queue.popleft()

        try:
            yield records()
        finally:
            self._subscribers = [s for s in self._subscribers if s is not entry]


def source_of(record: logging.LogRecord) -> LogSource:
    """The LogSource tag of a record."""
    source = getattr(record, "jmp_source", None)
    if source is not None:
        return LogSource(source)
    if getattr(record, "jmp_uuid", None) is not None or record.name.startswith(("driver.", "jumpstarter_driver")):
        return LogSource.DRIVER
    return LogSource.SYSTEM
