"""`jmp run`: run an exporter process."""

from __future__ import annotations

import click

from jumpstarter.cli.errors import friendly
from jumpstarter.cli.options import exporter_options, exporter_path


@click.command()
@exporter_options
@click.option("--unix-socket", "unix_socket", type=click.Path(dir_okay=False), default=None,
              help="Serve on this unix socket (local mode).")
@click.option("--run-hooks/--no-run-hooks", default=False, help="Run beforeLease at start and afterLease at exit.")
@friendly
def run(exporter: str | None, exporter_config: str | None, unix_socket: str | None, run_hooks: bool) -> None:
    """Run an exporter serving the driver tree of an exporter config.

    Stops cleanly on SIGINT/SIGTERM: drivers are closed and the socket is removed."""
    import anyio

    from jumpstarter.exporter.loader import load_exporter

    name, path = exporter_path(exporter, exporter_config)
    if unix_socket is None:
        raise click.UsageError("give --unix-socket PATH (TCP and controller modes are not available yet)")
    built = load_exporter(path)
    code = anyio.run(_serve, built, unix_socket, run_hooks, name)
    raise SystemExit(code)


async def _serve(exporter: object, socket_path: str, run_hooks: bool, name: str) -> int:
    import signal
    import sys

    import anyio

    from jumpstarter.exporter.exporter import Exporter

    assert isinstance(exporter, Exporter)
    async with exporter.serving(socket_path):
        if not await exporter.begin_lease(run_hooks=run_hooks) and exporter.exit_requested:
            print(f"exporter {name}: {exporter.exit_requested}", file=sys.stderr)
            return 1
        print(f"exporter {name} serving on {socket_path}", file=sys.stderr, flush=True)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        await exporter.end_lease(run_hooks=run_hooks)
    return 1 if exporter.exit_requested else 0
