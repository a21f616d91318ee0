"""`jmp shell` against a controller: lease (or attach to a lease), serve it on a private unix
socket through the router, run the shell or command with `JUMPSTARTER_HOST` pointing there.

The lease is released at exit only when this shell created it. The controller pushes lease changes
to the shell (an upstream controller is polled): `leases.warn_before` seconds before the end
(`JMP_LEASE_WARN_BEFORE` overrides it) the shell says `lease NAME expires in 5m`; when the lease
ends while the command runs (expired, released elsewhere, exporter gone), it says so at once, stops
the command and exits with code 9 and a message saying why.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from typing import Any

import click

from jumpstarter.cli.shell import _RemoteLogPrinter, command_or_shell, exporter_motd

#: Exit code when the lease ended under the command (`LeaseEndedError` in cli.errors).
LEASE_ENDED_EXIT = 9
#: Seconds a command gets to exit after SIGTERM once its lease has ended.
STOP_GRACE = 5.0


class _LeaseEnd:
    """Set once (from any thread) when the lease is gone; stops the running command."""

    def __init__(self) -> None:
        self.name = ""
        self.why: str | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self.expected = False  # we are ending it ourselves (EndSession, release): no news
        self._lock = threading.Lock()

    def __call__(self, why: str) -> None:
        with self._lock:
            if self.why is not None or self.expected:
                return
            self.why = why
            child = self.child
        _say(f"lease {self.name} {why}")
        if child is not None and child.poll() is None:
            threading.Thread(target=_stop, args=(child,), daemon=True).start()

    def watch(self, child: subprocess.Popen[bytes]) -> None:
        """Stop `child` when the lease ends (at once if it already has)."""
        with self._lock:
            self.child = child
            gone = self.why is not None
        if gone:
            _stop(child)

    def ending_it_ourselves(self) -> bool:
        """From now on the lease ending is no news (we end the session); False if it already ended."""
        with self._lock:
            self.expected = self.why is None
            return self.expected


def _stop(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        child.kill()


def run(
    config: Any,
    selector: str,
    lease_name: str | None,
    duration: float,
    command: tuple[str, ...],
    exporter_logs: bool,
    exporter_name: str | None = None,
) -> int:
    """Run the shell or command on a lease (a new one for `selector` / `exporter_name` unless
    `lease_name` is given); returns the exit code."""
    import tempfile

    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.lease import ControllerSession
    from jumpstarter.client.signals import terminate_as_interrupt

    end = _LeaseEnd()
    warning = warn_before(config)  # a bad JMP_LEASE_WARN_BEFORE fails before anything is leased
    created = lease_name is None
    name = lease_name or ""
    from jumpstarter.streams.loops import anyio_options

    with (
        terminate_as_interrupt(lambda: end.child),  # a cancelled CI job releases its lease too
        start_blocking_portal("asyncio", anyio_options()) as portal,
        tempfile.TemporaryDirectory(prefix="jmp-lease-") as tmp,
    ):
        session = portal.call(ControllerSession, config)
        try:
            if created:
                lease = portal.call(session.create_lease, selector, duration, exporter_name)
                name = lease.name.rsplit("/", 1)[-1]
                _say(f"lease {name} requested")
            end.name = name
            code = _on_lease(portal, session, config, name, created, command, exporter_logs, end, tmp, warning)
        finally:
            if created and name:
                try:
                    portal.call(session.release_lease, name)
                except Exception as exc:
                    if end.why is None:
                        _say(f"Warning: releasing lease {name} failed: {exc}")
            portal.call(session.close)
    if end.why is not None:
        _say(f"Error: lease {name} ended: {end.why}")
        return LEASE_ENDED_EXIT
    return code


def warn_before(config: Any) -> float | None:
    """Seconds before a lease's end to warn of it (None: never): `JMP_LEASE_WARN_BEFORE` (a
    duration like 5m or 90s, 0 for never) or the client config's `leases.warn_before`."""
    from jumpstarter.controller.durations import parse_duration
    from jumpstarter.errors import ConfigurationError

    text = os.environ.get("JMP_LEASE_WARN_BEFORE", "").strip()
    if not text:
        seconds = float(config.leases.warn_before)
    elif text == "0":
        seconds = 0.0
    else:
        try:
            seconds = parse_duration(text).total_seconds()
        except ValueError as exc:
            raise ConfigurationError(f"JMP_LEASE_WARN_BEFORE: {exc}") from None
    return seconds or None


def _say(line: str) -> None:
    click.echo(line, err=True)


def _on_lease(
    portal: Any, session: Any, config: Any, name: str, created: bool, command: tuple[str, ...],
    exporter_logs: bool, end: _LeaseEnd, tmp: str, warning: float | None,
) -> int:
    """Wait for the lease, serve it on a socket in `tmp`, run the command with it."""
    from jumpstarter.cli.jserver import command_server
    from jumpstarter.client.client import client_from_path
    from jumpstarter.client.lease import LeaseTunnel, serve_lease, wait_ready
    from jumpstarter.client.lease_watch import watch_lease
    from jumpstarter.streams.tunnel import TUNNELLED_OPTIONS

    ready = portal.call(wait_ready, session, name, _say, float(config.leases.acquisition_timeout))
    labels = portal.call(session.exporter_labels, ready.exporter)
    _say(f"lease {name}: exporter {ready.exporter}")
    socket_path = os.path.join(tmp, "lease.sock")
    tunnel = LeaseTunnel(session, name, float(config.leases.dial_timeout))
    allow, unsafe = list(config.drivers.allow), bool(config.drivers.unsafe)
    options = TUNNELLED_OPTIONS
    watcher = portal.start_task_soon(watch_lease, session, name, end, _say, warning)
    try:
        with (
            DrainingLogPrinter(exporter_logs) as printer,
            portal.wrap_async_context_manager(serve_lease(tunnel, socket_path)),
            client_from_path(socket_path, portal, allow=allow, unsafe=unsafe, channel_options=options) as root,
            root.log_stream(show_all=exporter_logs),
        ):
            motd = exporter_motd(root)
            if motd:
                _say(motd)
            env = dict(os.environ)
            env.update({
                "JUMPSTARTER_HOST": socket_path,
                "JMP_DRIVERS_ALLOW": "UNSAFE" if unsafe else ",".join(allow),
                "JMP_EXPORTER": ready.exporter,
                "JMP_EXPORTER_LABELS": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                "JMP_LEASE": name,
            })
            with command_server(root, tmp) as j_socket:
                env["JMP_J_SOCKET"] = j_socket
                code = command_or_shell(command, ready.exporter, env, end.watch)
            if end.ending_it_ourselves() and created:
                try:  # runs afterLease now, while its output still reaches us
                    root.end_session()
                    printer.drain()
                except Exception:
                    pass
    finally:
        watcher.cancel()
    return code


class DrainingLogPrinter(_RemoteLogPrinter):
    """Prints exporter log records arriving over LogStream (hook output always, driver logs on
    request); attached before the stream opens, so replayed beforeLease output is not lost."""

    QUIET = 0.2  # seconds without records after which `drain` considers the output complete
    LONGEST = 3.0

    def __init__(self, exporter_logs: bool) -> None:
        super().__init__(exporter_logs)
        self.logger = logging.getLogger("exporter")
        self.last = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        self.last = time.monotonic()
        super().emit(record)

    def __enter__(self) -> DrainingLogPrinter:
        self.logger.addHandler(self)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)

    def drain(self) -> None:
        """Wait until records stop arriving (afterLease output travels on another connection
        than the EndSession answer, so it may still be on its way)."""
        deadline = time.monotonic() + self.LONGEST
        self.last = max(self.last, time.monotonic())
        while time.monotonic() < min(deadline, self.last + self.QUIET):
            time.sleep(0.02)
