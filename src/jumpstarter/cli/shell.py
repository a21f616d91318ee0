"""`jmp shell`: a shell (or one command) with an exporter's drivers at hand."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from jumpstarter.cli.errors import friendly
from jumpstarter.cli.lease_args import client_options
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


def run_child(argv: list[str], env: dict[str, str], started: Callable[[Any], None] | None = None) -> int:
    """Run `argv` to completion; its exit status as a shell reports it (127: not found, 126: not
    executable, 128+N: signal N). `started` gets the process once it runs. Ctrl-C reaches the child
    from the terminal; the child decides (an interactive shell ignores it), we keep waiting."""
    import subprocess

    try:
        child = subprocess.Popen(argv, env=env)
    except FileNotFoundError:
        click.echo(f"Error: command not found: {argv[0]}", err=True)
        return 127
    except PermissionError:
        click.echo(f"Error: permission denied: {argv[0]}", err=True)
        return 126
    if started is not None:
        started(child)
    while True:
        try:
            code = child.wait()
            break
        except KeyboardInterrupt:
            continue
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
@click.option("--tls-grpc", "tls_grpc", default=None, metavar="HOST:PORT", help="Connect to a direct-mode exporter.")
@click.option("--tls-grpc-insecure", is_flag=True, help="Direct mode over plain TCP (no TLS).")
@click.option(
    "--tls-ca",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Verify the exporter's certificate with this CA (PEM) instead of pinning its fingerprint.",
)
@click.option(
    "--accept-fingerprint",
    default=None,
    metavar="SHA256:..",
    help="Trust the exporter certificate with this fingerprint (first use); it is then remembered.",
)
@click.option("--passphrase", envvar="JMP_GRPC_PASSPHRASE", default=None, help="Direct-mode passphrase.")
@click.option("--exporter-logs", is_flag=True, help="Show driver logs.")
@click.option("--run-hooks", is_flag=True, help="Run the exporter's beforeLease/afterLease hooks (local mode).")
@click.option("-l", "--selector", multiple=True, help="Lease an exporter matching this label selector (controller).")
@click.option("-n", "--name", "exporter_name", default=None, metavar="NAME",
              help="Lease this exporter by name (controller).")
@click.option("--acquisition-timeout", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="How long to wait for the lease (default: the client config's leases.acquisition_timeout).")
@click.option("--lease", "lease_name", envvar="JMP_LEASE", default=None, help="Use this lease (env JMP_LEASE).")
@click.option("--duration", default="30m", show_default=True, help="Duration of a lease this shell requests.")
@client_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
@friendly
def shell(
    ctx: click.Context,
    exporter: str | None,
    exporter_config: str | None,
    tls_grpc: str | None,
    tls_grpc_insecure: bool,
    tls_ca: str | None,
    accept_fingerprint: str | None,
    passphrase: str | None,
    exporter_logs: bool,
    run_hooks: bool,
    selector: tuple[str, ...],
    exporter_name: str | None,
    acquisition_timeout: int | None,
    lease_name: str | None,
    duration: str,
    client: str | None,
    client_config: Any,
    command: tuple[str, ...],
) -> None:
    """Spawn $SHELL, or run COMMAND, with access to an exporter: one served in this process from an
    exporter config (local mode), one reached over TCP (direct mode, --tls-grpc), or one leased from
    the controller (-l SELECTOR, -n NAME or --lease NAME; the lease is released at exit if this shell
    made it).

    The exit status is COMMAND's. Inside, use `j` (e.g. `j power on`) or Python (`env()`)."""
    from jumpstarter.client.direct import DirectTarget

    _refuse_unknown_option(ctx, command)
    wanted = (selector, exporter_name, acquisition_timeout)
    leased = selector or exporter_name or lease_name or client or client_config
    if leased and not (tls_grpc or exporter or exporter_config):
        from_env = ctx.get_parameter_source("lease_name") is not click.core.ParameterSource.COMMANDLINE
        if (selector or exporter_name) and from_env:
            lease_name = None  # -l/-n ask for a new lease even inside a shell that has JMP_LEASE set
        raise SystemExit(_leased_shell(wanted, lease_name, duration, client, client_config, command, exporter_logs))

    if tls_grpc:
        target = DirectTarget(
            address=tls_grpc,
            passphrase=passphrase,
            insecure=tls_grpc_insecure,
            ca_file=tls_ca,
            accept_fingerprint=accept_fingerprint,
        )
        raise SystemExit(_direct_shell(target, tls_grpc, command, exporter_logs))
    try:
        name, path = exporter_path(exporter, exporter_config)
    except click.UsageError as exc:
        if exporter or exporter_config:
            raise
        raise click.UsageError(f"{exc.message}; or lease one from a controller: -l SELECTOR or --lease NAME") from None
    endpoint = _direct_endpoint(path)
    if endpoint is not None:
        # options given on the command line win over the saved config
        endpoint.passphrase = passphrase or endpoint.passphrase
        endpoint.insecure = tls_grpc_insecure or endpoint.insecure
        endpoint.ca_file = tls_ca or endpoint.ca_file
        endpoint.accept_fingerprint = accept_fingerprint or endpoint.accept_fingerprint
        raise SystemExit(_direct_shell(endpoint, name, command, exporter_logs))
    raise SystemExit(_local_shell(name, path, command, exporter_logs, run_hooks))


def _refuse_unknown_option(ctx: click.Context, command: tuple[str, ...]) -> None:
    """A mistyped option (`--duratoin 1h`) reaches us as the first word of COMMAND (the command
    takes unknown options through); refuse it before anything is leased or started."""
    if command and command[0].startswith("-") and command[0] != "-":
        known = [opt for param in ctx.command.params for opt in param.opts if opt.startswith("--")]
        raise click.NoSuchOption(command[0].split("=")[0], possibilities=known, ctx=ctx)


def _leased_shell(
    wanted: tuple[tuple[str, ...], str | None, int | None], lease_name: str | None, duration: str,
    client: str | None, client_config: Any, command: tuple[str, ...], exporter_logs: bool,
) -> int:
    """`wanted`: the -l selectors, the -n exporter name and --acquisition-timeout."""
    from jumpstarter.cli import lease_shell
    from jumpstarter.cli.lease_args import checked_selector, duration_seconds, load_client_config

    selector, exporter_name, acquisition_timeout = wanted
    if (selector or exporter_name) and lease_name:
        raise click.UsageError("give either -l SELECTOR / -n NAME (a new lease) or --lease NAME (an existing one), "
                               "not both")
    if not (selector or exporter_name or lease_name):
        raise click.UsageError("give -l SELECTOR or -n NAME to request a lease, or --lease NAME to use an existing one")
    config = load_client_config(client, client_config)
    if acquisition_timeout is not None:
        config.leases.acquisition_timeout = acquisition_timeout
    return lease_shell.run(config, checked_selector(selector), lease_name, duration_seconds(duration), command,
                           exporter_logs, exporter_name=exporter_name)


def _direct_endpoint(path: Any) -> Any:
    """A DirectTarget when the exporter config describes a remote direct-mode exporter (it has an
    `endpoint` and no `export`), else None."""
    from jumpstarter.config.exporter import ExporterConfig
    from jumpstarter.config.loading import load_model

    config = load_model(ExporterConfig, path, kind="ExporterConfig")
    if config.export or not config.endpoint:
        return None
    from jumpstarter.client.direct import DirectTarget
    from jumpstarter.direct.tls import fingerprint

    target = DirectTarget(address=config.endpoint, passphrase=config.token, insecure=bool(config.tls.insecure))
    if config.tls.ca:
        target.accept_fingerprint = fingerprint(config.tls.ca)
    return target


def command_or_shell(
    command: tuple[str, ...], name: str, env: dict[str, str], started: Callable[[Any], None] | None = None
) -> int:
    """Run `command` (or, without one, an interactive shell whose prompt names exporter `name`)
    with `env`, `j` on its PATH; its exit status (see `run_child`)."""
    import sysconfig

    # `j` lives next to the running `jmp`, even when its venv is not activated
    env["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), env.get("PATH", "")])
    if command:
        return run_child(list(command), env, started)
    argv, prompt = shell_argv(name)
    env.update(prompt)
    return run_child(argv, env, started)


def _direct_shell(target: Any, name: str, command: tuple[str, ...], exporter_logs: bool) -> int:
    import tempfile

    from anyio.from_thread import start_blocking_portal

    from jumpstarter.cli.jserver import command_server
    from jumpstarter.cli.lease_shell import DrainingLogPrinter
    from jumpstarter.client.client import client_from_target

    if target.insecure:
        click.echo("WARNING: --tls-grpc-insecure: traffic (and the passphrase) travel unencrypted", err=True)
    # the printer is attached before the log stream opens: the exporter replays the beforeLease
    # output at once, and a record relogged before a handler is there is lost
    with (
        start_blocking_portal("asyncio") as portal,
        tempfile.TemporaryDirectory(prefix="jmp-shell-") as tmp,
        DrainingLogPrinter(exporter_logs) as handler,
        client_from_target(target, portal, unsafe=True) as root,
        root.log_stream(show_all=exporter_logs),
    ):
        motd = exporter_motd(root)
        if motd:
            click.echo(motd, err=True)
        env = {**os.environ, **target.environment(name)}
        with command_server(root, tmp) as j_socket:
            env["JMP_J_SOCKET"] = j_socket
            code = command_or_shell(command, name, env)
        try:
            root.end_session()  # runs afterLease now, while its output still reaches us
            handler.drain()
        except Exception:  # the exporter may already be gone; the session ends with us anyway
            pass
        return code


def exporter_motd(root: Any) -> str:
    """The exporter's message of the day (with what its beforeLease hook added), from GetReport."""
    from google.protobuf import empty_pb2

    connection = root.connection
    report = connection.exporter_stub().GetReport(empty_pb2.Empty(), metadata=connection.metadata(()), timeout=10)
    return str(report.motd)


class _RemoteLogPrinter(logging.Handler):
    """Prints exporter logs received over LogStream (hook output always, driver logs on request)."""

    def __init__(self, show_driver_logs: bool) -> None:
        super().__init__(logging.INFO)
        self.show_driver_logs = show_driver_logs

    def emit(self, record: logging.LogRecord) -> None:
        source = record.name.removeprefix("exporter.")
        if source in ("beforeLease", "afterLease") or self.show_driver_logs:
            sys.stderr.write(f"[{source}] {record.getMessage()}\n")
            sys.stderr.flush()


def _local_shell(name: str, path: Any, command: tuple[str, ...], exporter_logs: bool, run_hooks: bool) -> int:
    import tempfile

    from anyio.from_thread import start_blocking_portal

    from jumpstarter.cli.jserver import command_server
    from jumpstarter.client.client import client_from_path
    from jumpstarter.exporter.loader import load_exporter

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
                    return 1
                if built.session.motd:
                    click.echo(built.session.motd, err=True)
                env = dict(os.environ)
                env.update(
                    {
                        "JUMPSTARTER_HOST": socket_path,
                        "JMP_DRIVERS_ALLOW": "UNSAFE",
                        "JMP_EXPORTER": name,
                        "JMP_EXPORTER_LABELS": ",".join(f"{k}={v}" for k, v in built.labels.items()),
                    }
                )
                with client_from_path(socket_path, portal, unsafe=True) as root, command_server(root, tmp) as j_socket:
                    env["JMP_J_SOCKET"] = j_socket
                    code = command_or_shell(command, name, env)
                portal.call(built.end_lease, run_hooks)
    finally:
        logging.getLogger().removeHandler(handler)
        for plain in plain_handlers:
            plain.removeFilter(quiet)
    return code
