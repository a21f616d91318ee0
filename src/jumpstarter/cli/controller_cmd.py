"""`jmp controller`: run a Jumpstarter controller (distributed mode)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from jumpstarter.cli.errors import friendly


@click.group()
def controller() -> None:
    """Run a controller: identities, exporter registry and leases."""


@controller.command()
@click.option("--address", default="0.0.0.0:8082", show_default=True, metavar="HOST:PORT",
              help="Where to listen (port 0: any free port).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory holding the database, keys, TLS certificate and admin credential.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Server certificate (PEM); default: self-signed, kept in the data directory.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Server private key (PEM).")
@click.option("--endpoint", default=None, metavar="HOST:PORT",
              help="Endpoint written into generated configs (default: the listening address).")
@friendly
def run(address: str, data_dir: Path, tls_cert: Path | None, tls_key: Path | None, endpoint: str | None) -> None:
    """Run a controller until SIGINT/SIGTERM (state is kept in --data-dir across restarts)."""
    import asyncio

    from jumpstarter.controller.server import ControllerSettings, serve

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("give both --tls-cert and --tls-key, or neither")
    settings = ControllerSettings(address=address, data_dir=data_dir, tls_cert=tls_cert, tls_key=tls_key,
                                  endpoint=endpoint)
    asyncio.run(serve(settings, announce=lambda line: print(line, file=sys.stderr, flush=True)))
