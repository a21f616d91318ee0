"""`jmp login`: get a token from an OIDC issuer (password grant, token exchange, browser or device
login) or take one as given, and write the client config that uses it.

Values missing from the flags come from the client config being rewritten, then from prompts
(only on a terminal and without `--nointeractive`; otherwise a missing value is a usage error).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from jumpstarter.cli.errors import friendly


def _required(label: str, flag: str, value: str | None, interactive: bool, *, default: str | None = None,
              hide: bool = False) -> str:
    """`value`, else the user's answer, else a usage error naming `flag`."""
    if value:
        return value
    if not interactive:
        if default is not None:
            return default
        raise click.UsageError(f"missing {flag} (needed with --nointeractive or without a terminal)")
    answer: str = click.prompt(label, default=default, hide_input=hide, show_default=default is not None)
    return answer


def _existing(client_config: Path | None, alias: str | None) -> Any:
    """The client config being rewritten, when it exists already."""
    from jumpstarter.config import paths
    from jumpstarter.config.client import ClientConfig

    path = client_config if client_config is not None else paths.client_path(alias) if alias else None
    return ClientConfig.from_file(path) if path is not None and path.is_file() else None


def _pinned_certificate(endpoint: str, interactive: bool) -> str:
    """The certificate the controller presents (trusted on first use, for `-k`)."""
    import ssl

    from jumpstarter.direct.tls import fingerprint
    from jumpstarter.errors import ConnectionLostError

    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{endpoint!r} is not HOST:PORT", param_hint="--endpoint")
    try:
        pem = ssl.get_server_certificate((host.strip("[]"), int(port)), timeout=10)
    except OSError as exc:
        raise ConnectionLostError(f"cannot fetch the certificate of {endpoint}: {exc}") from None
    if interactive:
        click.confirm(f"Trust the certificate of {endpoint} ({fingerprint(pem)}) without verifying it?", abort=True)
    click.echo(f"trusting the certificate of {endpoint}: {fingerprint(pem)}", err=True)
    return pem


@dataclass(slots=True, frozen=True)
class _Credentials:
    """What the flags say about how to get a token."""

    token: str | None
    connector_id: str | None
    username: str | None
    password: str | None
    device_flow: bool
    callback_port: int | None


def _obtain_token(issuer: str | None, client_id: str, given: _Credentials, offline_access: bool,
                  insecure_tls: bool, interactive: bool) -> tuple[str, str | None]:
    """(access token, refresh token) by the flow the flags ask for: a given token, token exchange,
    password grant, device flow, else the browser (only on request or when interactive)."""
    from jumpstarter.client.oidc import OidcClient, scopes
    from jumpstarter.client.oidc_flows import browser_login, device_login

    if given.token and not given.connector_id:
        return given.token, None
    browser = given.callback_port is not None or interactive
    if not (given.token or given.username or given.password or given.device_flow or browser):
        raise click.UsageError("no way to log in without prompts: give --username/--password, --token, "
                               "--device-flow or --callback-port")
    issuer = _required("OIDC issuer URL", "--issuer", issuer, interactive)
    oidc = OidcClient(issuer, client_id, insecure=insecure_tls)
    wanted = scopes(offline_access)
    if given.token and given.connector_id:
        granted = oidc.exchange(given.token, given.connector_id, wanted)
    elif given.username or given.password:
        username = _required("Username", "--username", given.username, interactive)
        password = _required("Password", "--password", given.password, interactive, hide=True)
        granted = oidc.password(username, password, wanted)
    elif given.device_flow:
        granted = device_login(oidc, wanted, _announce)
    else:
        granted = browser_login(oidc, wanted, given.callback_port or 0, _announce)
    return granted.access_token, granted.refresh_token


def _announce(text: str) -> None:
    click.echo(text, err=True)


def _previous_issuer(existing: Any) -> str | None:
    """The OIDC issuer of the token being replaced, if it came from one."""
    from jumpstarter.client.oidc import token_claims
    from jumpstarter.controller.auth import ISSUER
    from jumpstarter.errors import ConfigurationError

    if existing is None or not existing.token:
        return None
    try:
        iss = token_claims(existing.token).get("iss")
    except ConfigurationError:
        return None
    return iss if isinstance(iss, str) and iss != ISSUER else None


def _tls(existing: Any, endpoint: str, insecure_tls: bool, interactive: bool) -> Any:
    """The config's `tls`: kept from the config being rewritten for the same endpoint, pinned on
    first use with `-k`, else the system's CAs."""
    from jumpstarter.config.common import TLSConfig

    if existing is not None and existing.endpoint == endpoint and (existing.tls.ca or not insecure_tls):
        return existing.tls
    return TLSConfig(ca=_pinned_certificate(endpoint, interactive)) if insecure_tls else TLSConfig()


def _save(config: Any, client_config: Path | None, alias: str | None) -> Path:
    """Write the config to its file or alias (the first client config becomes the current one)."""
    from jumpstarter.config import paths, store

    if client_config is not None:
        paths.atomic_write(client_config, config.to_yaml(), paths.SECRET_MODE)
        return client_config
    assert alias is not None
    written = store.save_client(config, alias)
    if store.current_client() is None:
        store.use_client(alias)
    return written


@click.command("login")
@click.option("--client", "alias", default=None, metavar="ALIAS",
              help="Client config to write (default: the --name); its values are the defaults.")
@click.option("--client-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write this client config file instead of one in the config home.")
@click.option("-e", "--endpoint", default=None, metavar="HOST:PORT", help="Controller gRPC endpoint.")
@click.option("--namespace", default=None, help="Namespace of the Client object on the controller.")
@click.option("--name", default=None, help="Name of the Client object on the controller.")
@click.option("--issuer", default=None, metavar="URL", help="OIDC issuer URL.")
@click.option("--client-id", default="jumpstarter-cli", show_default=True, help="OAuth2 client id at the issuer.")
@click.option("--username", default=None, help="Log in with this user (password grant).")
@click.option("--password", default=None, help="Password of --username (prompted, hidden, when missing).")
@click.option("--token", default=None,
              help="Use this token as is, or, with --connector-id, exchange it at the issuer (RFC 8693).")
@click.option("--connector-id", default=None, help="Dex connector that issued --token (token exchange).")
@click.option("--device-flow", is_flag=True, envvar="JMP_OIDC_DEVICE_FLOW",
              help="Log in on another device: show a URL and a code, wait for the login (RFC 8628).")
@click.option("--callback-port", type=click.IntRange(0, 65535), default=None, envvar="JMP_OIDC_CALLBACK_PORT",
              metavar="PORT", help="Log in in the browser, redirected back to 127.0.0.1:PORT (0: any free port); "
              "the default on a terminal when no other way is given.")
@click.option("--offline-access/--no-offline-access", default=True, show_default=True,
              help="Ask for a refresh token (`jmp auth refresh` uses it).")
@click.option("-a", "--allow", default=None, help="Comma-separated driver client packages (globs) to load.")
@click.option("--unsafe", is_flag=True, help="Load any driver client package an exporter names (UNSAFE).")
@click.option("-k", "--insecure-tls", is_flag=True,
              help="Do not verify the issuer's certificate; trust the controller's on first use.")
@click.option("--nointeractive", is_flag=True, help="Never prompt: a missing value is an error.")
@friendly
def login(alias: str | None, client_config: Path | None, endpoint: str | None, namespace: str | None,
          name: str | None, issuer: str | None, client_id: str, username: str | None, password: str | None,
          token: str | None, connector_id: str | None, device_flow: bool, callback_port: int | None,
          offline_access: bool, allow: str | None, unsafe: bool, insecure_tls: bool, nointeractive: bool) -> None:
    """Log in to a controller and write the client config.

    Gets a token from the OIDC issuer with --username/--password (prompted when missing), exchanges
    --token with --connector-id, stores --token as given, or logs in with --device-flow or in the
    browser (--callback-port; the default on a terminal); then writes the client config (endpoint,
    TLS, namespace, name, token, refresh token) as ALIAS (--client) or --client-config FILE."""
    import time

    from jumpstarter.client.oidc import describe_expiry, token_claims
    from jumpstarter.config import paths
    from jumpstarter.config.client import ClientConfig, DriversConfig
    from jumpstarter.config.common import ObjectMeta

    if alias and client_config:
        raise click.UsageError("give either --client or --client-config, not both")
    if token and (username or password):
        raise click.UsageError("give --token or --username/--password, not both")
    if connector_id and not token:
        raise click.UsageError("--connector-id needs --token (the token to exchange)")
    if alias:
        paths.validate_alias(alias)
    interactive = not nointeractive and sys.stdin.isatty()
    existing = _existing(client_config, alias)
    endpoint = _required("Endpoint (host:port)", "--endpoint", endpoint or (existing and existing.endpoint),
                         interactive)
    namespace = _required("Namespace", "--namespace", namespace or (existing and existing.metadata.namespace),
                          interactive, default="default")
    name = _required("Client name", "--name", name or (existing and existing.metadata.name), interactive)
    if not client_config and not alias:
        alias = paths.validate_alias(name)
        existing = _existing(None, alias)
    issuer = issuer or _previous_issuer(existing)
    given = _Credentials(token, connector_id, username, password, device_flow, callback_port)
    access, refresh = _obtain_token(issuer, client_id, given, offline_access, insecure_tls, interactive)

    fields: dict[str, Any] = {
        "metadata": ObjectMeta(namespace=namespace, name=name), "endpoint": endpoint,
        "tls": _tls(existing, endpoint, insecure_tls, interactive), "token": access, "refresh_token": refresh,
    }
    if allow is not None or unsafe or existing is None:
        fields["drivers"] = DriversConfig(allow=[a.strip() for a in (allow or "").split(",") if a.strip()],
                                          unsafe=unsafe)
    config = existing.model_copy(update=fields) if existing is not None else ClientConfig(**fields)
    written = _save(config, client_config, alias)
    claims = token_claims(access)
    exp = claims.get("exp")
    expiry = describe_expiry(float(exp) if isinstance(exp, int | float) else None, time.time())
    click.echo(f"logged in to {endpoint} as client {namespace}/{name}; token {expiry}")
    click.echo(f"client config written to {written}")
