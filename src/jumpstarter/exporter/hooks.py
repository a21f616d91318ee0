"""Lease hooks: scripts the exporter runs before a lease is usable and after it ends.

Each hook runs in a pseudo-terminal (so its output is line-buffered), in its own process group
(so a timeout can stop everything it started: SIGTERM, then SIGKILL), with `JUMPSTARTER_HOST`
pointing at a socket where `j` and `env()` reach the exporter's drivers. Every output line is
logged with the hook's LogSource, which streams it live to the connected client.
"""

from __future__ import annotations

import enum
import logging
import os
import pty
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from jumpstarter.exporter.logging import LogSource

log = logging.getLogger("jumpstarter.hooks")
KILL_GRACE = 5.0


class OnFailure(enum.Enum):
    """What a failing hook does to the lease / exporter."""

    WARN = "warn"
    END_LEASE = "endLease"
    EXIT = "exit"


@dataclass(slots=True)
class HookSpec:
    """One configured hook (from ExporterConfig `hooks.beforeLease` / `hooks.afterLease`)."""

    script: str
    exec: str | None = None
    timeout: float = 120.0
    on_failure: OnFailure = OnFailure.WARN


@dataclass(slots=True)
class HookResult:
    """How a hook run ended."""

    ok: bool
    exit_code: int | None
    timed_out: bool = False
    message: str = ""
    output: list[str] = field(default_factory=list)


def command_for(spec: HookSpec, base_dir: Path | None = None) -> list[str]:
    """The argv running a hook: a script file (interpreter by extension or `exec`) or inline text."""
    script = spec.script
    candidate = Path(script) if "\n" not in script and len(script) < 4096 else None
    if candidate is not None and not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    if candidate is not None and candidate.is_file():
        if spec.exec:
            return [*spec.exec.split(), str(candidate)]
        if candidate.suffix == ".py":
            return [sys.executable, str(candidate)]
        return ["/bin/sh", str(candidate)]
    interpreter = spec.exec.split() if spec.exec else ["/bin/sh"]
    return [*interpreter, "-c", script]


def hook_environment(host: str, lease_name: str, client_name: str, motd_file: str | None) -> dict[str, str]:
    """The environment a hook runs with."""
    # JMP_J_SOCKET of a surrounding `jmp shell` would route the hook's `j` to that shell's exporter
    env = {k: v for k, v in os.environ.items() if k not in ("PS1", "JMP_J_SOCKET")}
    env.update(
        {
            "JUMPSTARTER_HOST": host,
            "JMP_DRIVERS_ALLOW": "UNSAFE",
            "LEASE_NAME": lease_name,
            "CLIENT_NAME": client_name,
            "TERM": "dumb",
            "DEBIAN_FRONTEND": "noninteractive",
            "GIT_TERMINAL_PROMPT": "0",
            # `j` is installed next to this Python; hooks find it without an activated venv
            "PATH": os.pathsep.join([sysconfig.get_path("scripts"), env.get("PATH", "")]),
        }
    )
    if motd_file is not None:
        env["JMP_MOTD_FILE"] = motd_file
    return env


async def run_hook(
    spec: HookSpec,
    source: LogSource,
    env: dict[str, str],
    *,
    base_dir: Path | None = None,
) -> HookResult:
    """Run one hook to completion (or timeout); its output lines are logged as they come."""
    argv = command_for(spec, base_dir)
    name = "beforeLease" if source is LogSource.BEFORE_LEASE_HOOK else "afterLease"
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(  # noqa: ASYNC220 - fork/exec is quick; waiting happens in a thread
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, close_fds=True
        )
    except OSError as exc:
        os.close(master)
        os.close(slave)
        return HookResult(ok=False, exit_code=None, message=f"{name} hook could not start: {exc}")
    os.close(slave)
    lines: list[str] = []
    timed_out = False

    def emit(line: str) -> None:
        lines.append(line)
        log.info("%s", line, extra={"jmp_source": int(source), "jmp_hook": name})

    drained = anyio.Event()

    async def read_output() -> None:
        try:
            await _read_lines(master, emit)
        finally:
            drained.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_output)
        with anyio.move_on_after(spec.timeout) as scope:
            await anyio.to_thread.run_sync(proc.wait, abandon_on_cancel=True)
        if scope.cancelled_caught:
            timed_out = True
            await _terminate(proc)
        # a background child may keep the terminal open: read what is left, briefly
        with anyio.move_on_after(2.0):
            await drained.wait()
        tg.cancel_scope.cancel()
    os.close(master)
    code = proc.returncode
    if timed_out:
        message = f"{name} hook timed out after {spec.timeout:g}s and was stopped"
        return HookResult(ok=False, exit_code=code, timed_out=True, message=message, output=lines)
    if code != 0:
        return HookResult(ok=False, exit_code=code, message=f"{name} hook failed with exit code {code}", output=lines)
    return HookResult(ok=True, exit_code=0, message=f"{name} hook succeeded", output=lines)


async def _read_lines(master: int, emit: Callable[[str], None]) -> None:
    """Read the terminal until every writer has closed it, emitting whole lines."""
    pending = b""
    while True:
        try:
            chunk = await anyio.to_thread.run_sync(os.read, master, 65536, abandon_on_cancel=True)
        except OSError:  # EIO: every writer closed the terminal
            chunk = b""
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            emit(raw.rstrip(b"\r").decode(errors="replace"))
    if pending.strip():
        emit(pending.rstrip(b"\r").decode(errors="replace"))


async def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the hook's process group, then SIGKILL it if it is still there after a grace period."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with anyio.move_on_after(KILL_GRACE):
        await anyio.to_thread.run_sync(proc.wait, abandon_on_cancel=True)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await anyio.to_thread.run_sync(proc.wait)
