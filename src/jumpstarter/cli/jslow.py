"""`j` without a shell command socket: connect to `JUMPSTARTER_HOST` over gRPC and run there."""

from __future__ import annotations

import os
import sys
from typing import Any


def run(argv: list[str]) -> int:
    """Run one `j` command line; returns the exit code."""
    host = os.environ.get("JUMPSTARTER_HOST")
    if not host:
        print(
            "Error: JUMPSTARTER_HOST is not set: run `j` inside `jmp shell` (or a hook), "
            "or set JUMPSTARTER_HOST to an exporter socket",
            file=sys.stderr,
        )
        return 2
    problem = _unreachable_socket(host)
    if problem:
        print(f"Error: JUMPSTARTER_HOST={host}: {problem}", file=sys.stderr)
        return 6
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.cli.errors import exit_code_for
    from jumpstarter.cli.jcommands import build_cli
    from jumpstarter.errors import JumpstarterError

    allow = [a for a in os.environ.get("JMP_DRIVERS_ALLOW", "").split(",") if a]
    unsafe = "UNSAFE" in allow
    try:
        with (
            start_blocking_portal("asyncio") as portal,
            _connect(host, portal, allow, unsafe) as root,
        ):
            return invoke(build_cli(root), argv)
    except JumpstarterError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except OSError as exc:  # includes TimeoutError and ConnectionError
        print(f"Error: cannot reach the exporter at {host}: {exc}", file=sys.stderr)
        return exit_code_for(exc)


def _unreachable_socket(host: str) -> str | None:
    """Why the unix socket `host` names cannot be an exporter, or None (also for host:port)."""
    import socket
    import stat

    path = host.removeprefix("unix://").removeprefix("unix:")
    if path == host and not host.startswith(("/", ".")):
        return None
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return "not a unix socket"
    except OSError:
        return "no exporter socket there (did the `jmp shell` or `jmp run` that made it exit?)"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError as exc:
            return f"nothing is serving on this socket ({exc.strerror or exc})"
    return None


def _connect(host: str, portal: Any, allow: list[str], unsafe: bool) -> Any:
    """Client tree for JUMPSTARTER_HOST: a unix socket, or a direct-mode `host:port`."""
    from jumpstarter.client.client import client_from_path, client_from_target
    from jumpstarter.client.direct import target_from_env

    if host.startswith(("/", ".", "unix:")):
        return client_from_path(host, portal, allow=allow, unsafe=unsafe)
    return client_from_target(target_from_env(host), portal, allow=allow, unsafe=unsafe, interactive=False)


def invoke(command: object, argv: list[str]) -> int:
    """Run a click command non-standalone, mapping errors to exit codes and messages."""
    import click

    from jumpstarter.cli.errors import exit_code_for
    from jumpstarter.errors import JumpstarterError

    assert isinstance(command, click.Command)
    try:
        result = command.main(args=argv, prog_name="j", standalone_mode=False)
        # without standalone mode click returns ctx.exit()'s code instead of exiting
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except (JumpstarterError, OSError, ValueError, TimeoutError, NotImplementedError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
