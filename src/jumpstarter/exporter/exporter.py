"""The exporter: a session plus the lease lifecycle (hooks, status, driver reset) around it."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from jumpstarter.driver.base import Driver
from jumpstarter.exporter.hooks import HookResult, HookSpec, OnFailure, hook_environment, run_hook
from jumpstarter.exporter.logging import LogSource
from jumpstarter.exporter.session import Session
from jumpstarter.exporter.status import HOOK_CALLABLE, ExporterStatus

if TYPE_CHECKING:
    from jumpstarter.direct.tls import ServerIdentity

log = logging.getLogger("jumpstarter.exporter")
S = ExporterStatus


class ExporterExit(Exception):
    """A hook with `onFailure: exit` failed: the exporter process must stop (exit code 1)."""


@dataclass(slots=True)
class TcpListener:
    """Where and how a direct-mode exporter listens."""

    address: str
    identity: ServerIdentity | None  # None: plain TCP
    passphrase: str | None  # None: no authentication


@dataclass(slots=True)
class Hooks:
    """The configured lease hooks."""

    before_lease: HookSpec | None = None
    after_lease: HookSpec | None = None
    base_dir: Path | None = None


@dataclass
class Exporter:
    """Serves a driver tree and runs the lease lifecycle around client sessions."""

    root: Driver
    hooks: Hooks = field(default_factory=Hooks)
    motd: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.session = Session(self.root, labels=self.labels, motd=self.motd)
        self.hook_socket: str | None = None
        self.lease_name = ""
        self.client_name = ""
        self.exit_requested: ExporterExit | None = None
        self.tcp_port: int | None = None
        self.gate: Any = None
        #: called after a client's EndSession ended the lease (a controlled exporter releases it)
        self.on_session_ended: Any = None
        self._socket_options: tuple[tuple[str, Any], ...] = ()

    @property
    def status(self) -> ExporterStatus:
        """Current status."""
        return self.session.status.status

    @asynccontextmanager
    async def serving(
        self, *socket_paths: str, tcp: TcpListener | None = None, socket_options: tuple[tuple[str, Any], ...] = ()
    ) -> AsyncIterator[Exporter]:
        """Serve on unix sockets and/or a TCP listener (plus a private hook socket) until the block
        exits; drivers are closed afterwards. With `tcp`, `self.tcp_port` is the bound port.
        `socket_options` are added to the gRPC options of the unix-socket server."""
        from jumpstarter.exporter.server import serve_unix
        from jumpstarter.wire.options import GRPC_OPTIONS

        self.exit_event = anyio.Event()
        self._socket_options = socket_options
        with tempfile.TemporaryDirectory(prefix="jmp-exporter-") as tmp:
            self.hook_socket = os.path.join(tmp, "hooks.sock")
            self.session.install_log_handler()
            try:
                async with AsyncExitStack() as stack:
                    await stack.enter_async_context(serve_unix(self.session, self.hook_socket, allowed=HOOK_CALLABLE))
                    if socket_paths:
                        await stack.enter_async_context(serve_unix(
                            self.session, *socket_paths, on_end_session=self._end_session_rpc,
                            options=(*GRPC_OPTIONS, *socket_options),
                        ))
                    if tcp is not None:
                        self.tcp_port = await stack.enter_async_context(self._serve_tcp(tcp))
                    yield self
            finally:
                self.session.remove_log_handler()
                if self.status is not S.OFFLINE:
                    self.session.status.transition(S.OFFLINE, "exporter stopped")
                await self.session.close_drivers()

    def serving_tls(
        self, socket_path: str, credentials: Any, interceptors: tuple[Any, ...] = ()
    ) -> AbstractAsyncContextManager[Any]:
        """Serve the session on one more unix socket, speaking TLS with `credentials` (inside
        `serving`: the same servicers and options as its sockets). A server of its own: gRPC
        takes no new port once a server has started, and the certificate may come later."""
        from jumpstarter.exporter.server import serve_unix
        from jumpstarter.wire.options import GRPC_OPTIONS

        return serve_unix(
            self.session, socket_path, on_end_session=self._end_session_rpc, credentials=credentials,
            interceptors=interceptors, options=(*GRPC_OPTIONS, *self._socket_options),
        )

    def _serve_tcp(self, tcp: TcpListener) -> Any:
        from jumpstarter.direct.gate import SessionGate
        from jumpstarter.direct.server import serve_tcp

        async def begin(client_name: str) -> bool:
            return await self.begin_lease("", client_name)

        self.gate = SessionGate(tcp.passphrase, begin, self.end_lease, lambda: self.session.status.message)
        return serve_tcp(self.session, tcp.address, self.gate, tcp.identity, on_end_session=self._end_session_rpc)

    async def begin_lease(self, lease_name: str = "", client_name: str = "", run_hooks: bool = True) -> bool:
        """Start a lease: reset drivers, run beforeLease, become LEASE_READY. Returns False when
        the lease cannot go on (hook failed with onFailure endLease/exit)."""
        self.lease_name, self.client_name = lease_name, client_name
        self.session.logs.start_lease()
        await self.session.reset_drivers()
        spec = self.hooks.before_lease if run_hooks else None
        if spec is None:
            self.session.status.transition(S.LEASE_READY, "ready")
            return True
        self.session.status.transition(S.BEFORE_LEASE_HOOK, "running beforeLease hook")
        motd_fd, motd_file = tempfile.mkstemp(prefix="jmp-motd-")
        os.close(motd_fd)
        try:
            result = await self._run(spec, LogSource.BEFORE_LEASE_HOOK, motd_file)
            extra = (await anyio.Path(motd_file).read_text(errors="replace")).strip()
        finally:
            os.unlink(motd_file)
        if extra:
            self.session.motd = "\n".join(x for x in (self.motd, extra) if x)
        if result.ok or spec.on_failure is OnFailure.WARN:
            message = "ready" if result.ok else f"warning: {result.message}"
            self.session.status.transition(S.LEASE_READY, message)
            return True
        self.session.status.transition(S.BEFORE_LEASE_HOOK_FAILED, result.message)
        if spec.on_failure is OnFailure.EXIT:
            self._request_exit(result.message)
        return False

    async def end_lease(self, run_hooks: bool = True) -> tuple[bool, str]:
        """End the lease: run afterLease (drivers still usable), then become AVAILABLE."""
        spec = self.hooks.after_lease if run_hooks else None
        ok, message = True, "session ended"
        if spec is not None and self.status in (S.LEASE_READY, S.BEFORE_LEASE_HOOK_FAILED):
            self.session.status.transition(S.AFTER_LEASE_HOOK, "running afterLease hook")
            result = await self._run(spec, LogSource.AFTER_LEASE_HOOK, None)
            ok, message = result.ok, result.message
            if not result.ok and spec.on_failure is not OnFailure.WARN:
                self.session.status.transition(S.AFTER_LEASE_HOOK_FAILED, result.message)
                if spec.on_failure is OnFailure.EXIT:
                    self._request_exit(result.message)
                return False, message
        if self.status is not S.AVAILABLE:
            self.session.status.transition(S.AVAILABLE, message)
        self.lease_name = self.client_name = ""
        try:
            await self.session.reset_drivers()  # the next client finds the device in a known state
        except Exception:
            log.exception("resetting drivers after the session failed")
        return ok, message

    def _request_exit(self, message: str) -> None:
        self.exit_requested = ExporterExit(message)
        event = getattr(self, "exit_event", None)
        if event is not None:
            event.set()

    async def _end_session_rpc(self) -> tuple[bool, str]:
        if self.status in (S.LEASE_READY, S.BEFORE_LEASE_HOOK_FAILED):
            lease_name = self.lease_name
            result = await self.end_lease()
            if self.on_session_ended is not None:
                self.on_session_ended(lease_name)
            return result
        return True, f"exporter is {self.status.name}"

    async def _run(self, spec: HookSpec, source: LogSource, motd_file: str | None) -> HookResult:
        assert self.hook_socket is not None
        env = hook_environment(self.hook_socket, self.lease_name, self.client_name, motd_file)
        result = await run_hook(spec, source, env, base_dir=self.hooks.base_dir)
        level = logging.INFO if result.ok else logging.WARNING
        log.log(level, "%s", result.message, extra={"jmp_source": int(source)})
        return result
