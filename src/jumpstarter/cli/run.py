"""`jmp run`: run an exporter process (local unix socket, or direct mode over TCP)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from jumpstarter.cli.errors import friendly
from jumpstarter.cli.options import exporter_options, exporter_path


@click.command()
@exporter_options
@click.option(
    "--unix-socket",
    "unix_socket",
    type=click.Path(dir_okay=False),
    default=None,
    help="Serve on this unix socket (local mode).",
)
@click.option(
    "--tls-grpc-listener",
    "listener",
    default=None,
    metavar="[HOST:]PORT",
    help="Serve clients over TCP (direct mode); TLS unless --tls-grpc-insecure.",
)
@click.option("--tls-grpc-insecure", is_flag=True, help="Plain TCP without TLS (trusted networks only).")
@click.option(
    "--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None, help="Server certificate (PEM)."
)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None, help="Server private key (PEM).")
@click.option(
    "--passphrase",
    envvar="JMP_GRPC_PASSPHRASE",
    default=None,
    help="Passphrase clients must present (env JMP_GRPC_PASSPHRASE). Default: generated once and kept.",
)
@click.option("--insecure-no-auth", is_flag=True, help="Accept any client without a passphrase (not recommended).")
@click.option(
    "--run-hooks/--no-run-hooks",
    default=False,
    help="Local mode: run beforeLease at start and afterLease at exit (direct mode always runs them).",
)
@friendly
def run(
    exporter: str | None,
    exporter_config: str | None,
    unix_socket: str | None,
    listener: str | None,
    tls_grpc_insecure: bool,
    tls_cert: str | None,
    tls_key: str | None,
    passphrase: str | None,
    insecure_no_auth: bool,
    run_hooks: bool,
) -> None:
    """Run an exporter serving the driver tree of an exporter config.

    Stops cleanly on SIGINT/SIGTERM: drivers are closed and sockets removed."""
    import anyio

    from jumpstarter.exporter.loader import load_exporter

    name, path = exporter_path(exporter, exporter_config)
    if unix_socket is None and listener is None:
        from jumpstarter.exporter.controlled import has_controller, run_controlled

        if has_controller(path):  # distributed mode: the config names a controller
            from jumpstarter.streams.loops import anyio_options

            raise SystemExit(anyio.run(run_controlled, path, name, backend_options=anyio_options()))
    if unix_socket is None and listener is None:
        raise click.UsageError("give --unix-socket PATH (local mode) or --tls-grpc-listener [HOST:]PORT (direct mode)")
    tcp = (
        _tcp_listener(path, listener, tls_grpc_insecure, tls_cert, tls_key, passphrase, insecure_no_auth)
        if listener
        else None
    )
    built = load_exporter(path)
    code = anyio.run(_serve, built, unix_socket, tcp, run_hooks, name)
    raise SystemExit(code)


def _tcp_listener(
    config_path: Path,
    listener: str,
    insecure: bool,
    cert: str | None,
    key: str | None,
    passphrase: str | None,
    no_auth: bool,
) -> Any:
    from jumpstarter.direct import credentials
    from jumpstarter.exporter.exporter import TcpListener

    address = listener if ":" in listener else f"0.0.0.0:{listener}"
    identity = None if insecure else credentials.server_identity(config_path, cert, key)
    if insecure:
        click.echo("WARNING: --tls-grpc-insecure: traffic (and the passphrase) travel unencrypted", err=True)
    if no_auth:
        click.echo("WARNING: --insecure-no-auth: anyone who can reach this port can drive the device", err=True)
        secret = None
    else:
        secret = passphrase or credentials.stored_passphrase(config_path)
    return TcpListener(address=address, identity=identity, passphrase=secret)


async def _serve(exporter: Any, socket_path: str | None, tcp: Any, run_hooks: bool, name: str) -> int:
    import signal

    import anyio

    from jumpstarter.exporter.exporter import Exporter

    assert isinstance(exporter, Exporter)
    paths = (socket_path,) if socket_path else ()
    async with exporter.serving(*paths, tcp=tcp):
        local_lease = tcp is None
        # handled from before readiness is announced: whoever waits for that line may stop us next
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            if local_lease and not await exporter.begin_lease(run_hooks=run_hooks) and exporter.exit_requested:
                print(f"exporter {name}: {exporter.exit_requested}", file=sys.stderr)
                return 1
            _announce(exporter, name, socket_path, tcp)
            async with anyio.create_task_group() as tg:

                async def watch_exit() -> None:
                    await exporter.exit_event.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_exit)
                async for _ in signals:
                    break
                tg.cancel_scope.cancel()
        if exporter.exit_requested:
            print(f"exporter {name}: {exporter.exit_requested}", file=sys.stderr)
            return 1
        if local_lease:
            await exporter.end_lease(run_hooks=run_hooks)
        elif exporter.gate is not None and exporter.gate.holder is not None:
            await exporter.end_lease()
    return 1 if exporter.exit_requested else 0


def _announce(exporter: Any, name: str, socket_path: str | None, tcp: Any) -> None:
    """Tell whoever started us where we serve (scripts and tests wait for these lines)."""
    if socket_path:
        print(f"exporter {name} serving on {socket_path}", file=sys.stderr, flush=True)
    if tcp is not None:
        host = tcp.address.rsplit(":", 1)[0]
        security = "TLS" if tcp.identity is not None else "plain TCP"
        print(f"exporter {name} listening on {host}:{exporter.tcp_port} ({security})", file=sys.stderr, flush=True)
        if tcp.identity is not None:
            print(f"certificate fingerprint {tcp.identity.fingerprint}", file=sys.stderr, flush=True)
        print("authentication: " + ("passphrase" if tcp.passphrase else "NONE"), file=sys.stderr, flush=True)
