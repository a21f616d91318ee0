"""Who is watching which lease: each watcher holds an event that is set on every change to its
lease (the coordinator touches a lease when it is granted, changed or ended, or its exporter comes
or goes), so watching costs nothing until something happens."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

#: (namespace, name) of a lease.
Key = tuple[str, str]


class LeaseWatchers:
    """The change events of the watchers of each lease."""

    def __init__(self) -> None:
        self._events: dict[Key, set[asyncio.Event]] = {}

    def __bool__(self) -> bool:
        """Whether anyone watches any lease (else touching is skipped altogether)."""
        return bool(self._events)

    @contextmanager
    def watch(self, key: Key) -> Iterator[asyncio.Event]:
        """An event set whenever lease `key` changes, for the duration of the block."""
        changed = asyncio.Event()
        events = self._events.setdefault(key, set())
        events.add(changed)
        try:
            yield changed
        finally:
            events.discard(changed)
            if not events:
                self._events.pop(key, None)

    def touch(self, key: Key) -> None:
        """Lease `key` changed: wake its watchers."""
        for changed in self._events.get(key, ()):
            changed.set()
