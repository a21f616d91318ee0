"""Exporter status: an explicit state machine with one guarded transition function."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field


class ExporterStatus(enum.IntEnum):
    """Mirrors `jumpstarter.v1.ExporterStatus` (same numbers)."""

    UNSPECIFIED = 0
    OFFLINE = 1
    AVAILABLE = 2
    BEFORE_LEASE_HOOK = 3
    LEASE_READY = 4
    AFTER_LEASE_HOOK = 5
    BEFORE_LEASE_HOOK_FAILED = 6
    AFTER_LEASE_HOOK_FAILED = 7


S = ExporterStatus

#: status -> statuses it may move to. Anything may go OFFLINE (shutdown).
TRANSITIONS: dict[ExporterStatus, frozenset[ExporterStatus]] = {
    S.UNSPECIFIED: frozenset({S.AVAILABLE, S.OFFLINE}),
    S.OFFLINE: frozenset({S.AVAILABLE}),
    S.AVAILABLE: frozenset({S.BEFORE_LEASE_HOOK, S.LEASE_READY, S.OFFLINE}),
    S.BEFORE_LEASE_HOOK: frozenset({S.LEASE_READY, S.BEFORE_LEASE_HOOK_FAILED, S.OFFLINE}),
    S.LEASE_READY: frozenset({S.AFTER_LEASE_HOOK, S.AVAILABLE, S.OFFLINE}),
    S.AFTER_LEASE_HOOK: frozenset({S.AVAILABLE, S.AFTER_LEASE_HOOK_FAILED, S.OFFLINE}),
    S.BEFORE_LEASE_HOOK_FAILED: frozenset({S.AFTER_LEASE_HOOK, S.AVAILABLE, S.OFFLINE}),
    S.AFTER_LEASE_HOOK_FAILED: frozenset({S.AVAILABLE, S.OFFLINE}),
}

#: States in which clients' driver calls are served.
CALLABLE = frozenset({S.LEASE_READY})
#: States in which calls through the hook socket are served (hooks drive the device with `j`).
HOOK_CALLABLE = frozenset({S.LEASE_READY, S.BEFORE_LEASE_HOOK, S.AFTER_LEASE_HOOK})


class InvalidTransition(RuntimeError):
    """A status change the state machine does not allow."""


@dataclass(slots=True)
class StatusMachine:
    """Current status, the one before it, a message and a monotonic version."""

    status: ExporterStatus = S.AVAILABLE
    previous: ExporterStatus | None = None
    message: str = ""
    version: int = 0
    _changed: asyncio.Condition | None = field(default=None, repr=False)
    _waker: asyncio.Future[None] | None = field(default=None, repr=False)

    def transition(self, new: ExporterStatus, message: str = "") -> None:
        """Move to `new`, or raise `InvalidTransition`; a move to the same status only updates
        the message."""
        if new != self.status and new not in TRANSITIONS[self.status]:
            raise InvalidTransition(f"exporter cannot go from {self.status.name} to {new.name}")
        if new != self.status:
            self.previous = self.status
            self.status = new
        self.message = message
        self.version += 1
        if self._changed is not None:
            self._notify()

    def _notify(self) -> None:
        cond = self._changed
        assert cond is not None

        async def wake() -> None:
            async with cond:
                cond.notify_all()

        self._waker = asyncio.ensure_future(wake())  # keep a reference until it ran

    async def wait_for(self, *targets: ExporterStatus) -> ExporterStatus:
        """Wait until the status is one of `targets`."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            await self._changed.wait_for(lambda: self.status in targets)
        return self.status
