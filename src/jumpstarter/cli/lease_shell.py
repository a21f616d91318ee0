"""`jmp shell` against a controller: lease (or attach to a lease), serve it on a private unix
socket through the router, run the shell or command with `JUMPSTARTER_HOST` pointing there.

The lease is released at exit only when this shell created it. When the lease ends while the
command runs (expired, released elsewhere, exporter gone), the command is stopped and the shell
exits with code 9 and a message saying why.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from typing import Any

import click

#: Exit code when the lease ended under the command (`LeaseEndedError` in cli.errors).
LEASE_ENDED_EXIT = 9
#: Seconds a command gets to exit after SIGTERM once its lease has ended.
STOP_GRACE = 5.0


class _LeaseEnd:
    """Set once (from any thread) when the lease is gone; stops the running command."""

    def __init__(self) -> None:
        self.why: str | None = None
        self.event = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def __call__(self, why: str) -> None:
        with self._lock:
            if self.why is not None:
                return
            self.why = why
            child = self.child
        self.event.set()
        if child is not None and child.poll() is None:
            threading.Thread(target=_stop, args=(child,), daemon=True).start()


def _stop(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        child.kill()


def _run_watched(argv: list[str], env: dict[str, str], end: _LeaseEnd) -> int:
    """Run `argv` like a shell would report it, stopping it if the lease ends meanwhile."""
    try:
        child = subprocess.Popen(argv, env=env)
    except FileNotFoundError:
        click.echo(f"Error: command not found: {argv[0]}", err=True)
        return 127
    except PermissionError:
        click.echo(f"Error: permission denied: {argv[0]}", err=True)
        return 126
    with end._lock:
        end.child = child
        gone = end.why is not None
    if gone:
        _stop(child)
    while True:
        try:
            code = child.wait()
            break
        except KeyboardInterrupt:  # the child got the terminal's SIGINT too; let it decide
            continue
    return 128 - code if code < 0 else code


def run(
    config: Any,
    selector: str,
    lease_name: str | None,
    duration: float,
    command: tuple[str, ...],
    exporter_logs: bool,
) -> int:
    """Run the shell or command on a lease; returns the exit code."""
    import tempfile

    from anyio.from_thread import start_blocking_portal

    from jumpstarter.cli.jserver import command_server
    from jumpstarter.cli.shell import _RemoteLogPrinter
    from jumpstarter.client.client import client_from_path
    from jumpstarter.client.lease import ControllerSession, LeaseTunnel, serve_lease, wait_ready, watch_lease
    from jumpstarter.streams.tunnel import TUNNELLED_OPTIONS

    end = _LeaseEnd()

    def progress(line: str) -> None:
        click.echo(line, err=True)

    with start_blocking_portal("asyncio") as portal, tempfile.TemporaryDirectory(prefix="jmp-lease-") as tmp:
        session = portal.call(ControllerSession, config)
        created = lease_name is None
        name = lease_name or ""
        try:
            if created:
                lease = portal.call(session.create_lease, selector, duration)
                name = lease.name.rsplit("/", 1)[-1]
                progress(f"lease {name} requested")
            ready = portal.call(wait_ready, session, name, progress, float(config.leases.acquisition_timeout))
            labels = portal.call(session.exporter_labels, ready.exporter)
            progress(f"lease {name}: exporter {ready.exporter}")
            socket_path = os.path.join(tmp, "lease.sock")
            tunnel = LeaseTunnel(session, name, float(config.leases.dial_timeout))
            allow, unsafe = list(config.drivers.allow), bool(config.drivers.unsafe)
            tunnelled: dict[str, Any] = {"allow": allow, "unsafe": unsafe, "channel_options": TUNNELLED_OPTIONS}
            watcher = portal.start_task_soon(watch_lease, session, name, end, progress)
            try:
                with (
                    portal.wrap_async_context_manager(serve_lease(tunnel, socket_path)),
                    client_from_path(socket_path, portal, **tunnelled) as root,
                    root.log_stream(show_all=exporter_logs),
                ):
                    printer = _RemoteLogPrinter(exporter_logs)
                    exporter_log = logging.getLogger("exporter")
                    exporter_log.addHandler(printer)
                    exporter_log.setLevel(logging.INFO)
                    try:
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
                            code = _child(command, ready.exporter, env, end)
                        if created and end.why is None:
                            try:  # runs afterLease now, while its output still reaches us
                                root.end_session()
                            except Exception:
                                pass
                    finally:
                        exporter_log.removeHandler(printer)
            finally:
                watcher.cancel()
        finally:
            if created and name:
                try:
                    portal.call(session.release_lease, name)
                except Exception as exc:
                    if end.why is None:
                        click.echo(f"Warning: releasing lease {name} failed: {exc}", err=True)
            portal.call(session.close)
    if end.why is not None:
        click.echo(f"Error: lease {name} ended: {end.why}", err=True)
        return LEASE_ENDED_EXIT
    return code


def _child(command: tuple[str, ...], exporter: str, env: dict[str, str], end: _LeaseEnd) -> int:
    import sysconfig

    from jumpstarter.cli.shell import shell_argv

    # `j` lives next to the running `jmp`, even when its venv is not activated
    env["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), env.get("PATH", "")])
    if command:
        return _run_watched(list(command), env, end)
    argv, prompt = shell_argv(exporter)
    env.update(prompt)
    return _run_watched(argv, env, end)
