"""An exporter under a controller: register, keep the Status stream open, run leases as the
controller assigns them, report status changes, and reconnect with backoff whenever the controller
goes away (forever; only a rejected token stops it).

Client connections reach the exporter through routers: while it holds a lease it keeps a `Listen`
stream open, and bridges every stream announced there to a fresh connection to its own session
socket (`routed.RoutedConnections`). Those connections outlive a lost controller (only the
Listen stream is re-opened on reconnection) and are cut when the lease ends.

End-to-end TLS sessions: once the controller issues the exporter a session certificate, the
session is also served over TLS (mutual, only the current lease's client certificate admitted) on
`session-tls.sock` next to the session socket, so routers only carry ciphertext. A controller
without the service (upstream's) leaves the exporter serving as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from jumpstarter.config.exporter import ExporterConfig
from jumpstarter.errors import PermissionDeniedError, UnauthenticatedError
from jumpstarter.exporter.exporter import Exporter
from jumpstarter.exporter.routed import RoutedConnections
from jumpstarter.exporter.status import ExporterStatus
from jumpstarter.streams.tunnel import TUNNELLED_OPTIONS

log = logging.getLogger("jumpstarter.exporter")
S = ExporterStatus

#: Reconnection backoff: first wait, factor, cap (seconds).
BACKOFF = (0.2, 2.0, 10.0)


class ControlledExporter:
    """Runs one `Exporter` for a controller."""

    def __init__(
        self, exporter: Exporter, config: ExporterConfig, name: str, announce: Callable[[str], None]
    ) -> None:
        self.exporter = exporter
        self.config = config
        self.name = name
        self.announce = announce
        self.registered_once = False
        self._listen: asyncio.Task[None] | None = None
        self._control: tuple[Any, Any] | None = None  # (stub, metadata) while connected
        self._background: set[asyncio.Task[None]] = set()
        self.routed: RoutedConnections | None = None
        self._extra_servers: AsyncExitStack | None = None  # servers closed with the session server
        self._tls_server: AsyncExitStack | None = None  # the TLS session server, once started
        self._tls_ca: str | None = None  # the session CA it trusts
        self.tls_session_socket: str | None = None  # its socket, while serving
        #: (status, message) last reported on this connection: the change watcher and the lease
        #: steps both report, and the controller needs each state once
        self._reported: tuple[int, str] | None = None

    async def run(self) -> int:
        """Serve until SIGINT/SIGTERM (0), a rejected token (4) or a hook demanding exit (1)."""
        socket_dir = tempfile.mkdtemp(prefix="jmp-exporter-")
        try:
            return await self._run(os.path.join(socket_dir, "session.sock"))
        finally:
            shutil.rmtree(socket_dir, ignore_errors=True)

    async def _run(self, session_socket: str) -> int:
        self.routed = RoutedConnections(session_socket, self.config.tls.ca)
        self.exporter.on_session_ended = self._session_ended
        async with (
            self.exporter.serving(session_socket, socket_options=TUNNELLED_OPTIONS),
            AsyncExitStack() as self._extra_servers,
        ):
            main = asyncio.ensure_future(self._reconnect_forever())
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            exit_wait = asyncio.ensure_future(self.exporter.exit_event.wait())
            stop_wait = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({main, exit_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
                for task in (main, exit_wait, stop_wait):
                    task.cancel()
                await asyncio.gather(main, exit_wait, stop_wait, return_exceptions=True)
            if self.exporter.exit_requested:
                print(f"exporter {self.name}: {self.exporter.exit_requested}", file=sys.stderr)
                return 1
            if main.done() and not main.cancelled():
                return main.result()  # a rejected token (or an unexpected error, raised here)
            if self.exporter.lease_name:
                await self._end_lease()
            await self.routed.aclose()
        return 0

    async def _reconnect_forever(self) -> int:
        from jumpstarter.client.controller import translate

        delay = BACKOFF[0]
        while True:
            try:
                await self._connected()
                delay = BACKOFF[0]
                log.warning("controller closed the status stream; reconnecting")
            except Exception as exc:
                error = translate(exc, self.config.endpoint or "")
                if isinstance(error, (UnauthenticatedError, PermissionDeniedError)):
                    print(f"exporter {self.name}: {error}", file=sys.stderr, flush=True)
                    return 4
                log.warning("controller at %s unreachable (%s); retrying in %.1fs", self.config.endpoint, error, delay)
                if self.registered_once:
                    self.announce(f"exporter {self.name} lost the controller; reconnecting")
            await asyncio.sleep(delay)
            delay = min(delay * BACKOFF[1], BACKOFF[2])

    async def _connected(self) -> None:
        import grpc

        from jumpstarter.client.controller import auth_metadata, channel_parts
        from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb
        from jumpstarter.protocol.v1 import jumpstarter_pb2_grpc

        target, creds, options = channel_parts(self.config)
        metadata = auth_metadata(self.config)
        async with grpc.aio.secure_channel(target, creds, options=options) as channel:
            stub = jumpstarter_pb2_grpc.ControllerServiceStub(channel)
            session = self.exporter.session
            reports = [
                pb.DriverInstanceReport(
                    uuid=r.uuid, parent_uuid=r.parent_uuid, labels=r.labels, description=r.description,
                    methods_description=r.methods_description,
                )
                for r in session.reports
            ]
            await stub.Register(pb.RegisterRequest(labels=session.labels, reports=reports), metadata=metadata)
            await self._serve_tls_sessions(channel, metadata)
            self._control = (stub, metadata)
            self._reported = None  # a new connection hears the current state at least once
            reporter = asyncio.ensure_future(self._report_changes(stub, metadata))
            try:
                status_stream = stub.Status(pb.StatusRequest(), metadata=metadata)
                await self._report(stub, metadata)
                self.announce(f"exporter {self.name} registered with controller {target}")
                self.registered_once = True
                async for assignment in status_stream:
                    await self._apply(stub, metadata, assignment)
            finally:
                self._control = None
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)
                self._stop_listen()  # routed connections stay: they do not go through the controller

    async def _serve_tls_sessions(self, channel: Any, metadata: Any) -> None:
        """Ask for a session certificate on every connection to the controller (its record that
        this exporter serves TLS sessions lives in memory: a restarted controller learns it again)
        and serve TLS sessions with the first one; a certificate from another session CA (the
        controller's data was reset) restarts the TLS server with it."""
        import grpc

        from jumpstarter.exporter.session_tls import CurrentLeaseOnly, certificate_namespace, server_credentials
        from jumpstarter.wire.session_tls import request_certificate

        if self._extra_servers is None or self.routed is None:
            return
        try:
            issued = await request_certificate(channel, metadata)
        except grpc.aio.AioRpcError as exc:
            log.info("no session certificate (%s: %s); serving without TLS sessions", exc.code().name, exc.details())
            return
        if issued is None:
            log.debug("the controller issues no session certificates; serving without TLS sessions")
            return
        if issued.ca_pem == self._tls_ca:
            return  # serving already, with a certificate from this CA
        if self._tls_server is not None:
            log.warning("the controller's session CA changed; restarting the TLS session server")
            await self._tls_server.aclose()
            self.tls_session_socket = self.routed.tls_session_socket = self._tls_ca = None
        path = os.path.join(os.path.dirname(self.routed.session_socket), "session-tls.sock")
        guard = CurrentLeaseOnly(certificate_namespace(issued.certificate_pem), lambda: self.exporter.lease_name)
        self._tls_server = await self._extra_servers.enter_async_context(AsyncExitStack())
        try:
            await self._tls_server.enter_async_context(
                self.exporter.serving_tls(path, server_credentials(issued), (guard,))
            )
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("cannot serve TLS sessions on %s: %s", path, exc)
            return
        self._tls_ca = issued.ca_pem
        self.tls_session_socket = self.routed.tls_session_socket = path
        self.announce(f"exporter {self.name} serving end-to-end TLS sessions on {path}")

    async def _apply(self, stub: Any, metadata: Any, assignment: Any) -> None:
        """Move to the lease the controller says we hold (or to none)."""
        current = self.exporter.lease_name
        wanted = assignment.lease_name if assignment.leased else ""
        if current and current != wanted:
            await self._end_lease()
            await self._report(stub, metadata)
        if wanted and wanted != current:
            log.info("lease %s begins (client %s)", wanted, assignment.client_name)
            self._start_listen(stub, metadata, wanted)
            ok = await self.exporter.begin_lease(wanted, assignment.client_name)
            await self._report(stub, metadata, release=not ok)
            if not ok:
                await self._end_lease()
                await self._report(stub, metadata)
        elif wanted and (self._listen is None or self._listen.done()):
            self._start_listen(stub, metadata, wanted)  # reconnected during the lease: listen again
        elif not wanted and not current:
            await self._report(stub, metadata)  # e.g. our session had already ended (EndSession)

    def _session_ended(self, lease_name: str) -> None:
        """A client's EndSession ended the lease here (afterLease has run): ask the controller to
        release it, as upstream exporters do."""
        if self._control is None or not lease_name:
            return
        task = asyncio.ensure_future(self._report(*self._control, release=True, message="session ended by the client"))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _end_lease(self) -> None:
        log.info("lease %s ends", self.exporter.lease_name)
        self._stop_listen()
        if self.routed is not None:
            self.routed.close_all()
        if self.exporter.status in (S.LEASE_READY, S.BEFORE_LEASE_HOOK_FAILED, S.BEFORE_LEASE_HOOK):
            await self.exporter.end_lease()
        self.exporter.lease_name = ""
        if self.exporter.status is not S.AVAILABLE and self.exporter.status is not S.OFFLINE:
            with contextlib.suppress(Exception):
                self.exporter.session.status.transition(S.AVAILABLE, "lease ended")

    def _start_listen(self, stub: Any, metadata: Any, lease_name: str) -> None:
        from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb

        self._stop_listen()

        async def listen() -> None:
            import grpc

            delay = BACKOFF[0]
            while True:
                try:
                    async for offer in stub.Listen(pb.ListenRequest(lease_name=lease_name), metadata=metadata):
                        delay = BACKOFF[0]
                        if self.routed is not None:
                            self.routed.accept(offer.router_endpoint, offer.router_token)
                    return  # the controller ended it: the lease is over
                except grpc.aio.AioRpcError as exc:
                    if exc.code() is not grpc.StatusCode.UNAVAILABLE:
                        log.warning("listening for lease %s failed: %s", lease_name, exc.details())
                        return
                await asyncio.sleep(delay)
                delay = min(delay * BACKOFF[1], BACKOFF[2])

        self._listen = asyncio.ensure_future(listen())
        self._listen.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _stop_listen(self) -> None:
        if self._listen is not None:
            self._listen.cancel()
            self._listen = None

    async def _report(self, stub: Any, metadata: Any, release: bool = False, message: str | None = None) -> None:
        from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb

        machine = self.exporter.session.status
        text = machine.message if message is None else message
        state = (int(machine.status), text)
        if not release and state == self._reported:
            return
        request = pb.ReportStatusRequest(status=state[0], message=text)  # type: ignore[arg-type]
        if release:
            request.release_lease = True
        await stub.ReportStatus(request, metadata=metadata)
        self._reported = state

    async def _report_changes(self, stub: Any, metadata: Any) -> None:
        """Report every status change (latest wins when several happen quickly)."""
        machine = self.exporter.session.status
        while True:
            seen = machine.status
            await machine.wait_for(*(s for s in ExporterStatus if s is not seen))
            with contextlib.suppress(Exception):
                await self._report(stub, metadata)


async def run_controlled(path: Path, name: str) -> int:
    """`jmp run` for a config with `endpoint` and `token`."""
    from jumpstarter.config.loading import load_model
    from jumpstarter.exporter.loader import load_exporter

    config = load_model(ExporterConfig, path, kind="ExporterConfig")
    exporter = load_exporter(path)
    for logger_name in ("jumpstarter.hooks", "jumpstarter.exporter"):  # hook output reaches clients at any level
        forwarded = logging.getLogger(logger_name)
        if forwarded.getEffectiveLevel() > logging.INFO:
            forwarded.setLevel(logging.INFO)
    if config.metadata.name:
        exporter.session.labels.setdefault("jumpstarter.dev/name", config.metadata.name)

    def announce(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return await ControlledExporter(exporter, config, name, announce).run()


def has_controller(path: Path) -> bool:
    """Whether the exporter config at `path` names a controller (endpoint and token)."""
    from jumpstarter.config.loading import load_model

    config = load_model(ExporterConfig, path, kind="ExporterConfig")
    return bool(config.endpoint and config.token)
