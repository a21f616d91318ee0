"""Helpers shared by the built-in driver tests: exporter sessions reachable by `j` processes, and
running `j` command lines in-process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from jumpstarter.cli.jcommands import build_cli
from jumpstarter.cli.jslow import invoke
from jumpstarter.config.exporter import ExporterConfig
from jumpstarter.config.loading import validate_text
from jumpstarter.driver import Driver
from jumpstarter.exporter.local import local_session

J = str(Path(sys.executable).parent / "j")


def run_j(root: Any, *argv: str) -> int:
    """Run `j ARGV...` against the client tree `root` in this process (output goes to sys.stdout
    and sys.stderr, for capsys); returns the exit code."""
    return invoke(build_cli(root), list(argv))


def drivers_from_yaml(export: str) -> Driver:
    """The driver tree of an exporter config whose `export:` section is `export` (YAML text,
    indented by two spaces), built the way `jmp run` builds it."""
    text = f"apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nexport:\n{export}"
    return validate_text(ExporterConfig, text, "exporter.yaml").build_drivers()


@contextmanager
def exporter_socket(root: Driver) -> Iterator[str]:
    """Serve `root` on a unix socket (a local exporter session); yields the socket path."""
    with start_blocking_portal("asyncio") as portal, portal.wrap_async_context_manager(local_session(root)) as path:
        yield path


def close_listening(sock: socket.socket) -> None:
    """Close a socket another thread is blocked on (in accept or recvfrom): shutting it down
    first wakes that thread, closing alone would not."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # not connected (UDP, listeners): the shutdown still wakes the waiter
        pass
    sock.close()


def j_process(host: str, *argv: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Start the installed `j` program against the exporter at `host` (no `jmp shell` around it)."""
    if not Path(J).exists():
        pytest.skip(f"{J} is not installed (pip install -e .)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JMP_", "JUMPSTARTER_"))}
    env["JUMPSTARTER_HOST"] = host
    env["PYTHONUNBUFFERED"] = "1"
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen([J, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)
