"""`jmp auth`: what the token of a client config says (issuer, subject, expiry), renewing it with
its refresh token, and rotating a controller-issued one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from jumpstarter.cli.errors import friendly


def _client_options(func: Any) -> Any:
    func = click.option("--client-config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        default=None, help="Path of a client config file.")(func)
    func = click.option("--client", "alias", default=None, metavar="ALIAS",
                        help="Alias of a client config (default: the current client).")(func)
    return func


def _load(alias: str | None, client_config: Path | None) -> tuple[str, Path, Any]:
    """(label, file, config) of the selected client config."""
    from jumpstarter.config import paths, store
    from jumpstarter.config.client import ClientConfig

    if alias and client_config:
        raise click.UsageError("give either --client or --client-config, not both")
    if client_config is not None:
        return client_config.stem, client_config, ClientConfig.from_file(client_config)
    alias = alias or store.current_client()
    if alias is None:
        raise click.UsageError("no client selected: pass --client ALIAS or --client-config FILE "
                               "(or choose one with `jmp config client use ALIAS`)")
    config = store.load_client(alias)
    return alias, paths.client_path(alias), config


def _claims(label: str, config: Any) -> dict[str, Any]:
    from jumpstarter.client.oidc import token_claims
    from jumpstarter.errors import ConfigurationError

    if not config.token:
        raise ConfigurationError(f"client config {label!r} has no token; get one with `jmp login`")
    return token_claims(config.token)


def _when(seconds: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@click.group()
def auth() -> None:
    """Show, renew and rotate the tokens of client configs."""


@auth.command("status")
@_client_options
@click.option("-v", "--verbose", is_flag=True, help="Show every claim of the token too.")
@friendly
def status(alias: str | None, client_config: Path | None, verbose: bool) -> None:
    """Show the issuer, subject and expiry of a client's token.

    Exits with the unauthenticated code (4) when the token has expired. The token is decoded, not
    verified: only the controller can tell whether it is still accepted."""
    import json

    from jumpstarter.client.oidc import describe_expiry, span
    from jumpstarter.errors import UnauthenticatedError

    label, path, config = _load(alias, client_config)
    claims = _claims(label, config)
    exp = claims.get("exp")
    expiry = float(exp) if isinstance(exp, int | float) else None
    now = time.time()
    click.echo(f"client:   {label} ({path})")
    click.echo(f"issuer:   {claims.get('iss', '(none)')}")
    click.echo(f"subject:  {claims.get('sub', '(none)')}")
    if expiry is not None:
        click.echo(f"expires:  {_when(expiry)} ({describe_expiry(expiry, now)})")
    else:
        click.echo("expires:  never")
    click.echo(f"refresh:  {'yes' if config.refresh_token else 'no'}")
    if verbose:
        click.echo("claims:")
        click.echo(json.dumps(claims, indent=2, sort_keys=True, default=str))
    if expiry is not None and expiry <= now:
        raise UnauthenticatedError(f"the token of client {label!r} expired {span(now - expiry)} ago; {_renew(claims)}"
                                   + (" or renew it with `jmp auth refresh`" if config.refresh_token else ""))


def _renew(claims: dict[str, Any]) -> str:
    """How to get a new token: the controller's own tokens come from an administrator, not a login."""
    from jumpstarter.controller.auth import ISSUER

    if claims.get("iss") == ISSUER:
        return "ask an administrator for a new config (`jmp admin rotate client NAME --save` or `--out FILE`)"
    return "log in again with `jmp login`"


@auth.command("refresh")
@_client_options
@click.option("--client-id", default="jumpstarter-cli", show_default=True, help="OAuth2 client id at the issuer.")
@click.option("-k", "--insecure-tls", is_flag=True, help="Do not verify the issuer's certificate.")
@friendly
def refresh(alias: str | None, client_config: Path | None, client_id: str, insecure_tls: bool) -> None:
    """Renew a client's token with its refresh token (from `jmp login --offline-access`)."""
    from jumpstarter.client.oidc import OidcClient, describe_expiry, token_claims
    from jumpstarter.config import paths
    from jumpstarter.errors import ConfigurationError

    label, path, config = _load(alias, client_config)
    if not config.refresh_token:
        raise ConfigurationError(f"client config {label!r} has no refresh token; {_renew(_claims(label, config))}")
    issuer = _claims(label, config).get("iss")
    if not isinstance(issuer, str):
        raise ConfigurationError(f"the token of client config {label!r} names no issuer")
    granted = OidcClient(issuer, client_id, insecure=insecure_tls).refresh(config.refresh_token)
    renewed = config.model_copy(update={
        "token": granted.access_token, "refresh_token": granted.refresh_token or config.refresh_token,
    })
    paths.atomic_write(path, renewed.to_yaml(), paths.SECRET_MODE)
    exp = token_claims(granted.access_token).get("exp")
    expiry = describe_expiry(float(exp) if isinstance(exp, int | float) else None, time.time())
    click.echo(f"renewed the token of client {label!r} ({path}); it {expiry}")


@auth.command("rotate")
@_client_options
@friendly
def rotate(alias: str | None, client_config: Path | None) -> None:
    """Replace a client's controller-issued token with a new one (the old one stops working at once)
    and keep it in the client config."""
    from jumpstarter.client.controller import ControllerClient
    from jumpstarter.client.oidc import describe_expiry
    from jumpstarter.config import paths
    from jumpstarter.controller.auth import ISSUER
    from jumpstarter.errors import ConfigurationError
    from jumpstarter.protocol.client.v1 import client_pb2

    label, path, config = _load(alias, client_config)
    if _claims(label, config).get("iss") != ISSUER:
        raise ConfigurationError(f"the token of client config {label!r} comes from an OIDC issuer, which the "
                                 "controller cannot rotate: log in again with `jmp login`")
    conn = ControllerClient(config)
    try:
        parent = f"namespaces/{config.metadata.namespace}/clients/{config.metadata.name}"
        issued = conn.call(conn.client_stub().RotateToken, client_pb2.RotateTokenRequest(parent=parent))
    finally:
        conn.close()
    paths.atomic_write(path, config.model_copy(update={"token": issued.token}).to_yaml(), paths.SECRET_MODE)
    expiry = describe_expiry(float(issued.expiry.seconds) if issued.HasField("expiry") else None, time.time())
    click.echo(f"rotated the token of client {label!r} ({path}); the old one no longer works; the new one {expiry}")
