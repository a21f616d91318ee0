"""`j` without a shell command socket: connect to `JUMPSTARTER_HOST` over gRPC and run there."""

from __future__ import annotations

import os
import sys


def run(argv: list[str]) -> int:
    """Run one `j` command line; returns the exit code."""
    import click

    host = os.environ.get("JUMPSTARTER_HOST")
    if not host:
        print(
            "Error: JUMPSTARTER_HOST is not set: run `j` inside `jmp shell` (or a hook), "
            "or set JUMPSTARTER_HOST to an exporter socket",
            file=sys.stderr,
        )
        return 2
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.cli.errors import exit_code_for
    from jumpstarter.cli.jcommands import build_cli
    from jumpstarter.client.client import client_from_path
    from jumpstarter.errors import JumpstarterError

    allow = [a for a in os.environ.get("JMP_DRIVERS_ALLOW", "").split(",") if a]
    unsafe = "UNSAFE" in allow
    try:
        with start_blocking_portal("asyncio") as portal, client_from_path(host, portal, allow=allow, unsafe=unsafe) as root:
            return invoke(build_cli(root), argv)
    except JumpstarterError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exit_code_for(exc)


def invoke(command: object, argv: list[str]) -> int:
    """Run a click command non-standalone, mapping errors to exit codes and messages."""
    import click

    from jumpstarter.cli.errors import exit_code_for
    from jumpstarter.errors import JumpstarterError

    assert isinstance(command, click.Command)
    try:
        command.main(args=argv, prog_name="j", standalone_mode=False)
        return 0
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
