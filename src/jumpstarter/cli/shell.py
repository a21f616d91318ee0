"""`jmp shell`: a shell (or one command) with an exporter's drivers at hand."""

from __future__ import annotations

import logging
import os
import sys

import click

from jumpstarter.cli.errors import friendly
from jumpstarter.cli.options import exporter_options, exporter_path


class _ConsoleLogHandler(logging.Handler):
    """Prints hook output (always) and driver logs (with --exporter-logs) on stderr."""

    def __init__(self, show_driver_logs: bool) -> None:
        super().__init__(logging.INFO)
        self.show_driver_logs = show_driver_logs

    def emit(self, record: logging.LogRecord) -> None:
        source = getattr(record, "jmp_source", None)
        if source in (2, 3):  # hook output
            prefix = "beforeLease" if source == 2 else "afterLease"
        elif self.show_driver_logs and (hasattr(record, "jmp_uuid") or record.name.startswith("driver.")):
            prefix = record.name
        else:
            return
        sys.stderr.write(f"[{prefix}] {record.getMessage()}\n")
        sys.stderr.flush()


class _KeepExporterRecordsOff(logging.Filter):
    """For the plain stderr handler: hook and driver records are printed by `_ConsoleLogHandler`,
    and the in-process exporter's own records (a failing driver call's traceback, say) only with
    --exporter-logs; otherwise they would land in the middle of the user's terminal session."""

    def __init__(self, show_exporter_logs: bool) -> None:
        super().__init__()
        self.show_exporter_logs = show_exporter_logs

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "jmp_source") or hasattr(record, "jmp_uuid"):
            return False
        if record.name.startswith(("driver.", "jumpstarter_driver", "jumpstarter.exporter", "jumpstarter.hooks")):
            return self.show_exporter_logs
        return True


#: LEASE_NAME seen by hooks in local mode, where no controller hands out lease names.
LOCAL_LEASE_NAME = "local"


def _user_name() -> str:
    """CLIENT_NAME for hooks in local mode: the local user."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _call(argv: list[str], env: dict[str, str]) -> int:
    """Run `argv` to completion; its exit status as a shell reports it (127: not found, 128+N: signal N)."""
    import subprocess

    try:
        code = subprocess.call(argv, env=env)
    except FileNotFoundError:
        click.echo(f"Error: command not found: {argv[0]}", err=True)
        return 127
    except PermissionError:
        click.echo(f"Error: permission denied: {argv[0]}", err=True)
        return 126
    return 128 - code if code < 0 else code


def shell_argv(name: str) -> tuple[list[str], dict[str, str]]:
    """argv and prompt variables for the user's $SHELL (bash/zsh/fish get a prompt naming the exporter)."""
    user_shell = os.environ.get("SHELL", "/bin/sh")
    base = os.path.basename(user_shell)
    prompt = f"⚡{name} ➤ "
    if base == "bash":
        return [user_shell, "--norc", "--noprofile"], {"PS1": prompt}
    if base == "zsh":
        return [user_shell, "--no-rcs"], {"PROMPT": prompt}
    if base == "fish":
        return [user_shell, "--no-config", "-C", f"function fish_prompt; echo -n '{prompt}'; end"], {}
    return [user_shell], {"PS1": prompt}


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@exporter_options
@click.option("--exporter-logs", is_flag=True, help="Show driver logs.")
@click.option("--run-hooks", is_flag=True, help="Run the exporter's beforeLease/afterLease hooks (local mode).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@friendly
def shell(
    exporter: str | None, exporter_config: str | None, exporter_logs: bool, run_hooks: bool, command: tuple[str, ...]
) -> None:
    """Spawn $SHELL, or run COMMAND, with JUMPSTARTER_HOST pointing at an exporter served in this process.

    The exit status is COMMAND's. Inside, use `j` (e.g. `j power on`) or Python (`env()`)."""
    import sysconfig
    import tempfile

    from anyio.from_thread import start_blocking_portal

    from jumpstarter.exporter.loader import load_exporter

    name, path = exporter_path(exporter, exporter_config)
    built = load_exporter(path)
    handler = _ConsoleLogHandler(exporter_logs)
    quiet = _KeepExporterRecordsOff(exporter_logs)
    plain_handlers = list(logging.getLogger().handlers)
    for plain in plain_handlers:
        plain.addFilter(quiet)
    logging.getLogger().addHandler(handler)
    for noisy in ("driver", "jumpstarter.hooks"):
        logging.getLogger(noisy).setLevel(logging.INFO)
    code = 0
    try:
        with start_blocking_portal("asyncio") as portal, tempfile.TemporaryDirectory(prefix="jmp-shell-") as tmp:
            socket_path = os.path.join(tmp, "exporter.sock")
            with portal.wrap_async_context_manager(built.serving(socket_path)):
                if not portal.call(built.begin_lease, LOCAL_LEASE_NAME, _user_name(), run_hooks):
                    click.echo(f"Error: {built.session.status.message}", err=True)
                    portal.call(built.end_lease, run_hooks)
                    raise SystemExit(1)
                if built.session.motd:
                    click.echo(built.session.motd, err=True)
                # an outer `jmp shell`'s command socket would send our `j` to the wrong exporter
                env = {k: v for k, v in os.environ.items() if k != "JMP_J_SOCKET"}
                env.update(
                    {
                        "JUMPSTARTER_HOST": socket_path,
                        "JMP_DRIVERS_ALLOW": "UNSAFE",
                        "JMP_EXPORTER": name,
                        "JMP_EXPORTER_LABELS": ",".join(f"{k}={v}" for k, v in built.labels.items()),
                        # `j` lives next to the running `jmp`, even when its venv is not activated
                        "PATH": os.pathsep.join([sysconfig.get_path("scripts"), env.get("PATH", "")]),
                    }
                )
                from jumpstarter.cli.jserver import command_server

                with command_server(socket_path, tmp, portal) as j_socket:
                    if j_socket:
                        env["JMP_J_SOCKET"] = j_socket
                    if command:
                        argv = list(command)
                    else:
                        argv, prompt = shell_argv(name)
                        env.update(prompt)
                    code = _call(argv, env)
                portal.call(built.end_lease, run_hooks)
    finally:
        logging.getLogger().removeHandler(handler)
        for plain in plain_handlers:
            plain.removeFilter(quiet)
    raise SystemExit(code)
