"""What failure reports show: exporter/driver logs and recent console output.

`LogCapture` is a logging handler kept on the `exporter` logger while the session's client runs
`log_stream()`: every record the exporter sends lands in a numbered ring buffer, so a report can
show the lines logged since its test started. `ConsoleTap` records the bytes a console driver's
streams deliver to the tests (a serial console read through `pexpect()`, say), so a report can
show the tail of what the device printed even after the test consumed it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

#: Lines kept for reports (the oldest are dropped).
LOG_LIMIT = 5000
#: Bytes of console output kept.
CONSOLE_LIMIT = 256 * 1024
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class LogCapture(logging.Handler):
    """A ring buffer of formatted log lines, each numbered so callers can ask for "lines since"."""

    def __init__(self, limit: int = LOG_LIMIT) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self._lines: deque[tuple[int, str]] = deque(maxlen=limit)
        self._seq = 0
        self._last = time.monotonic()
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self._changed:
            self._seq += 1
            self._lines.append((self._seq, line))
            self._last = time.monotonic()
            self._changed.notify_all()

    def mark(self) -> int:
        """The number of the last line so far."""
        with self._changed:
            return self._seq

    def touch(self) -> None:
        """Note activity that may still produce lines (a test just used the device): the next
        `settle()` waits its quiet time from now."""
        with self._changed:
            self._last = time.monotonic()

    def since(self, mark: int) -> list[str]:
        """Lines captured after `mark`."""
        with self._changed:
            return [line for seq, line in self._lines if seq > mark]

    def settle(self, quiet: float = 0.1, limit: float = 1.0) -> None:
        """Wait until no line arrived for `quiet` seconds (at most `limit`): records a driver logged
        just before a failure are still on their way through the exporter's LogStream."""
        deadline = time.monotonic() + limit
        with self._changed:
            while True:
                now = time.monotonic()
                if now - self._last >= quiet or now >= deadline:
                    return
                self._changed.wait(min(quiet - (now - self._last), deadline - now))


class ConsoleTap:
    """Keeps the last bytes received on a driver client's byte streams."""

    def __init__(self, limit: int = CONSOLE_LIMIT) -> None:
        self.limit = limit
        self._data = bytearray()
        self._lock = threading.Lock()

    def record(self, chunk: bytes) -> None:
        """Remember `chunk` (called from whatever thread received it)."""
        with self._lock:
            self._data += chunk
            if len(self._data) > self.limit:
                del self._data[: len(self._data) - self.limit]

    def tail(self, lines: int) -> str:
        """The last `lines` lines received, as text (escape sequences and carriage returns kept out)."""
        import re

        with self._lock:
            text = self._data.decode(errors="replace")
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")
        return "\n".join(text.splitlines()[-lines:])

    def attach(self, client: Any) -> None:
        """Tee every stream `client` opens from now on (its `stream()`, `pexpect()`, port forwards)."""
        original = client.stream_async
        tap = self

        @asynccontextmanager
        async def tapped(method: str = "connect") -> AsyncIterator[Any]:
            async with original(method) as stream:
                yield _TeeStream(stream, tap)

        # an instance attribute shadows the method, so every caller inside the client sees it
        client.stream_async = tapped


class _TeeStream:
    """A byte stream that hands what it receives to a `ConsoleTap` too."""

    def __init__(self, inner: Any, tap: ConsoleTap) -> None:
        self._inner = inner
        self._tap = tap

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def receive(self, *args: Any) -> bytes:
        chunk: bytes = await self._inner.receive(*args)
        self._tap.record(chunk)
        return chunk

    def receive_sync(self, timeout: float | None = None) -> bytes:
        chunk: bytes = self._inner.receive_sync(timeout)
        self._tap.record(chunk)
        return chunk
