"""`jmp controller`: run a Jumpstarter controller (distributed mode)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from jumpstarter.cli.errors import friendly


@click.group()
def controller() -> None:
    """Run a controller (identities, exporter registry, leases) or a router."""


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
@click.option("--router/--no-router", default=True, show_default=True,
              help="Route client connections in this process too (--no-router: only attached routers).")
@click.option("--offline-grace", type=click.FloatRange(min=0), default=30.0, show_default=True, metavar="SECONDS",
              help="How long a leased exporter may be disconnected before its lease ends.")
@click.option("--auth-config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="OIDC issuers whose tokens are accepted too (`authentication.jwt[]`).")
@click.option("--data-address", default=None, metavar="[HOST:]PORT|off",
              help="Router data port, where end-to-end TLS sessions are spliced (default: a free port on the "
                   "listening host; off: all routed traffic over RouterService.Stream).")
@friendly
def run(address: str, data_dir: Path, tls_cert: Path | None, tls_key: Path | None, endpoint: str | None,
        router: bool, offline_grace: float, auth_config: Path | None, data_address: str | None) -> None:
    """Run a controller until SIGINT/SIGTERM (state is kept in --data-dir across restarts)."""
    from jumpstarter.controller.server import ControllerSettings, serve

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("give both --tls-cert and --tls-key, or neither")
    settings = ControllerSettings(address=address, data_dir=data_dir, tls_cert=tls_cert, tls_key=tls_key,
                                  endpoint=endpoint, router=router, offline_grace=offline_grace,
                                  auth_config=auth_config, data_address=data_address)
    from jumpstarter.streams import loops

    loops.run(serve(settings, announce=lambda line: print(line, file=sys.stderr, flush=True)))


@controller.command("router")
@click.option("--address", default="0.0.0.0:8083", show_default=True, metavar="HOST:PORT",
              help="Where to listen (port 0: any free port).")
@click.option("--credential", envvar="JMP_ROUTER_CREDENTIAL", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Router credential from `jmp admin create router NAME --out FILE` (env JMP_ROUTER_CREDENTIAL).")
@click.option("--endpoint", default=None, metavar="HOST:PORT",
              help="Where clients and exporters reach this router (default: the listening address).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Server certificate (PEM); default: one issued by the controller for the endpoint's host.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Server private key (PEM).")
@click.option("--data-address", default=None, metavar="[HOST:]PORT|off",
              help="Router data port, where end-to-end TLS sessions are spliced (default: a free port on the "
                   "listening host; off: all routed traffic over RouterService.Stream).")
@friendly
def router_command(address: str, credential: Path, endpoint: str | None, tls_cert: Path | None,
                   tls_key: Path | None, data_address: str | None) -> None:
    """Run a router attached to a controller until SIGINT/SIGTERM (routes client connections)."""
    from jumpstarter.controller.router_process import RouterSettings, serve_router

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("give both --tls-cert and --tls-key, or neither")
    settings = RouterSettings(address=address, credential=credential, endpoint=endpoint, tls_cert=tls_cert,
                              tls_key=tls_key, data_address=data_address)
    from jumpstarter.streams import loops

    loops.run(serve_router(settings, announce=lambda line: print(line, file=sys.stderr, flush=True)))
