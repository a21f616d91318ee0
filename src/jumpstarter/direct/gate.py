"""Who may use a direct-mode exporter right now: passphrase check, failure rate limit, and the
one-client-at-a-time session whose start and end are the lease boundary (hooks, driver reset)."""

from __future__ import annotations

import hmac
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

from jumpstarter.errors import ExporterBusyError, ExporterNotReadyError, UnauthenticatedError

log = logging.getLogger("jumpstarter.exporter.direct")

PASSPHRASE_KEY = "x-jumpstarter-passphrase"
CLIENT_ID_KEY = "x-jmp-client-id"
CLIENT_NAME_KEY = "x-jmp-client-name"
#: Failed authentications allowed per peer host within FAILURE_WINDOW before it is refused.
MAX_FAILURES = 5
FAILURE_WINDOW = 30.0
#: A holder that keeps no stream open (an upstream client) loses the exporter after this idle time.
IDLE_TIMEOUT = 60.0


@dataclass(slots=True)
class Holder:
    """The client currently using the exporter."""

    client_id: str
    name: str
    since: datetime
    active: int = 0  # RPCs in flight
    keepers: int = 0  # long-lived streams open (our clients keep a LogStream open)
    had_keeper: bool = False
    last_seen: float = field(default_factory=time.monotonic)


def _busy_message(holder: Holder) -> str:
    since = holder.since.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"busy: in use by {holder.name} since {since}"


class FailureLimiter:
    """Refuses a peer host after too many failed authentications in a short window."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, host: str) -> bool:
        """Whether `host` is currently refused."""
        times = self._failures.get(host)
        if not times:
            return False
        now = time.monotonic()
        while times and now - times[0] > self.window:
            times.popleft()
        return len(times) >= self.limit

    def record(self, host: str) -> None:
        """Count one failure for `host`."""
        self._failures.setdefault(host, deque()).append(time.monotonic())


def peer_host(peer: str) -> str:
    """`ipv4:10.0.0.5:51234` -> `10.0.0.5` (the part a rate limit should key on)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]%")
    return rest.rsplit(":", 1)[0] if ":" in rest else rest


class SessionGate:
    """Checks each RPC's credentials and holds the exporter for one client at a time."""

    def __init__(
        self,
        passphrase: str | None,
        begin: Callable[[str], Awaitable[bool]],
        end: Callable[[], Awaitable[object]],
        status_message: Callable[[], str],
    ) -> None:
        self.passphrase = passphrase
        self._begin = begin
        self._end = end
        self._status_message = status_message
        self.holder: Holder | None = None
        self.limiter = FailureLimiter()
        self._lock = anyio.Lock()

    def authenticate(self, metadata: dict[str, str], peer: str) -> None:
        """Raise `UnauthenticatedError` unless the passphrase matches."""
        if self.passphrase is None:
            return
        host = peer_host(peer)
        if self.limiter.blocked(host):
            log.warning("refusing %s: too many failed authentication attempts", host)
            raise UnauthenticatedError("unauthenticated: too many failed attempts, try again later")
        given = metadata.get(PASSPHRASE_KEY, "")
        if not hmac.compare_digest(given.encode(), self.passphrase.encode()):
            self.limiter.record(host)
            log.warning("failed authentication from %s (%s passphrase)", peer, "wrong" if given else "no")
            raise UnauthenticatedError("unauthenticated: wrong or missing passphrase")

    async def enter(self, metadata: dict[str, str], peer: str, keeper: bool) -> Holder:
        """Admit one RPC: start a session for a new client, refuse others while one is held."""
        client_id = metadata.get(CLIENT_ID_KEY) or f"peer:{peer_host(peer)}"
        name = metadata.get(CLIENT_NAME_KEY) or client_id
        async with self._lock:
            holder = self.holder
            if holder is not None and holder.client_id != client_id:
                if holder.active == 0 and holder.keepers == 0 and time.monotonic() - holder.last_seen > IDLE_TIMEOUT:
                    log.info("session of %s idle for %ds: ending it", holder.name, IDLE_TIMEOUT)
                    await self._finish()
                    holder = None
                else:
                    raise ExporterBusyError(_busy_message(holder))
            if holder is None:
                holder = Holder(client_id=client_id, name=name, since=datetime.now(UTC))
                self.holder = holder
                log.info("session started for %s", name)
                if not await self._begin(name):
                    message = self._status_message()
                    await self._finish()
                    raise ExporterNotReadyError(f"session refused: {message}")
            holder.active += 1
            if keeper:
                holder.keepers += 1
                holder.had_keeper = True
            return holder

    async def leave(self, holder: Holder, keeper: bool) -> None:
        """One admitted RPC finished; when the client has nothing open any more, end its session."""
        holder.active -= 1
        holder.last_seen = time.monotonic()
        if keeper:
            holder.keepers -= 1
        if holder.had_keeper and holder.keepers == 0 and holder.active == 0:
            async with self._lock:
                if self.holder is holder and holder.keepers == 0 and holder.active == 0:
                    log.info("client %s went away: ending its session", holder.name)
                    await self._finish()

    async def end_session(self, metadata: dict[str, str], peer: str) -> None:
        """EndSession from the holder: run the end of the lease now. Others may not end it."""
        client_id = metadata.get(CLIENT_ID_KEY) or f"peer:{peer_host(peer)}"
        async with self._lock:
            holder = self.holder
            if holder is None:
                return
            if holder.client_id != client_id:
                raise ExporterBusyError(_busy_message(holder))
            await self._finish()

    async def _finish(self) -> None:
        self.holder = None
        with anyio.CancelScope(shield=True):
            await self._end()
