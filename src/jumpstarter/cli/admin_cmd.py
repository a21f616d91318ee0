"""`jmp admin`: create, inspect, delete clients and exporters of a controller and rotate tokens.

Authenticates with the admin credential the controller writes into its data directory
(`--admin-credential FILE` or `$JMP_ADMIN_CREDENTIAL`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from jumpstarter.cli.errors import friendly
from jumpstarter.cli.output import OUTPUT_OPTION, print_items

KINDS = click.Choice(["client", "exporter", "router", "policy", "clients", "exporters", "routers", "policies"])
OIDC_USERNAME = click.option(
    "--oidc-username", default=None, metavar="PREFIX:USER",
    help="OIDC user (issuer prefix included, e.g. dex:alice) whose tokens also act as this identity.",
)


def admin_credential_option(func: Any) -> Any:
    """`--admin-credential FILE` (env JMP_ADMIN_CREDENTIAL)."""
    return click.option(
        "--admin-credential", "admin_credential", envvar="JMP_ADMIN_CREDENTIAL", required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Admin credential file (admin.yaml in the controller's data directory); env JMP_ADMIN_CREDENTIAL.",
    )(func)


def namespace_option(func: Any) -> Any:
    """`-n/--namespace` (default: `default`)."""
    return click.option("-n", "--namespace", default="default", show_default=True, help="Namespace.")(func)


def _connect(credential: Path) -> Any:
    from jumpstarter.client.controller import ControllerClient
    from jumpstarter.config.client import ClientConfig

    return ControllerClient(ClientConfig.from_file(credential))


def _ref(kind: str, namespace: str, name: str) -> Any:
    from jumpstarter.protocol.admin.v1 import admin_pb2

    return admin_pb2.IdentityRef(kind=kind.rstrip("s"), namespace=namespace, name=name)


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="-l/--label")
        labels[key] = value
    return labels


@click.group()
def admin() -> None:
    """Manage clients and exporters of a controller (needs the admin credential)."""


@admin.group()
def create() -> None:
    """Create a client or exporter and print (or save) its config with a token."""


def _save_options(func: Any) -> Any:
    func = click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Write the config to this file (an existing exporter config keeps its drivers).")(func)
    func = click.option("-s", "--save", is_flag=True,
                        help="Save the config in the config home under NAME (clients/ or exporters/).")(func)
    return func


def _emit(kind: str, token_msg: Any, credential: Path, save: bool, out: Path | None, unsafe: bool = False) -> None:
    """Build the client/exporter config for an issued token and print or write it."""
    from jumpstarter.config import store
    from jumpstarter.config.client import ClientConfig, DriversConfig
    from jumpstarter.config.common import ObjectMeta, TLSConfig
    from jumpstarter.config.exporter import ExporterConfig
    from jumpstarter.config.paths import SECRET_MODE, atomic_write

    admin = ClientConfig.from_file(credential)
    identity = token_msg.identity
    common: dict[str, Any] = {
        "metadata": ObjectMeta(name=identity.name, namespace=identity.namespace),
        "endpoint": admin.endpoint,
        "tls": TLSConfig(ca=admin.tls.ca),
        "token": token_msg.token,
    }
    config: ClientConfig | ExporterConfig
    if kind == "client":
        config = ClientConfig(**common, drivers=DriversConfig(unsafe=unsafe))
    elif kind == "router":  # a credential like admin.yaml, for `jmp controller router --credential`
        config = ClientConfig(**common)
    else:
        existing = _existing_exporter(out) if out else _existing_saved_exporter(identity.name) if save else None
        config = existing.model_copy(update=common) if existing is not None else ExporterConfig(**common)
    if out is not None:
        atomic_write(out, config.to_yaml(), SECRET_MODE)
        click.echo(f"wrote {kind} config {out}", err=True)
    if save:
        if isinstance(config, ClientConfig):
            path = store.save_client(config, identity.name)
            if store.current_client() is None:
                store.use_client(identity.name)
        else:
            path = store.save_exporter(config, identity.name)
        click.echo(f"saved {kind} config {path}", err=True)
    if out is None and not save:
        click.echo(config.to_yaml(), nl=False)


def _existing_exporter(path: Path) -> Any:
    from jumpstarter.config.exporter import ExporterConfig

    return ExporterConfig.from_file(path) if path.is_file() else None


def _existing_saved_exporter(name: str) -> Any:
    from jumpstarter.config import paths

    return _existing_exporter(paths.exporter_path(name))


def _create(kind: str, name: str, namespace: str, label: tuple[str, ...], credential: Path,
            save: bool, out: Path | None, unsafe: bool = False, oidc_username: str | None = None) -> None:
    from jumpstarter.protocol.admin.v1 import admin_pb2

    with _connect(credential) as conn:
        stub = conn.admin_stub()
        request = admin_pb2.CreateIdentityRequest(
            ref=_ref(kind, namespace, name), labels=_labels(label), username=oidc_username or ""
        )
        issued = conn.call(stub.CreateIdentity, request)
    click.echo(f"created {kind} {namespace}/{name}", err=True)
    _emit(kind, issued, credential, save, out, unsafe)


@create.command("client")
@click.argument("name")
@namespace_option
@click.option("-l", "--label", multiple=True, metavar="KEY=VALUE", help="Label (repeatable).")
@click.option("--unsafe", is_flag=True, help="Let the client load any driver client class.")
@OIDC_USERNAME
@_save_options
@admin_credential_option
@friendly
def create_client(name: str, namespace: str, label: tuple[str, ...], unsafe: bool, oidc_username: str | None,
                  save: bool, out: Path | None, admin_credential: Path) -> None:
    """Create client NAME and print its config (or --save / --out it)."""
    _create("client", name, namespace, label, admin_credential, save, out, unsafe, oidc_username)


@create.command("exporter")
@click.argument("name")
@namespace_option
@click.option("-l", "--label", multiple=True, metavar="KEY=VALUE", help="Label leases select on (repeatable).")
@OIDC_USERNAME
@_save_options
@admin_credential_option
@friendly
def create_exporter(name: str, namespace: str, label: tuple[str, ...], oidc_username: str | None, save: bool,
                    out: Path | None, admin_credential: Path) -> None:
    """Create exporter NAME and print its config (or --save / --out it; add drivers under `export:`)."""
    _create("exporter", name, namespace, label, admin_credential, save, out, oidc_username=oidc_username)


@create.command("router")
@click.argument("name")
@namespace_option
@click.option("-l", "--label", multiple=True, metavar="KEY=VALUE",
              help="Label (repeatable): the router serves exporters carrying all its labels first.")
@click.option("--endpoint", metavar="HOST[:PORT]", default=None,
              help="Where clients and exporters reach the router: the controller signs a certificate for "
                   "this host only, and hands the router out only under it.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the router credential to this file (default: print it).")
@admin_credential_option
@friendly
def create_router(name: str, namespace: str, label: tuple[str, ...], endpoint: str | None, out: Path | None,
                  admin_credential: Path) -> None:
    """Create router NAME and print (or --out) its credential for `jmp controller router`."""
    if endpoint is not None:
        label = (*label, f"{_ROUTER_HOST_LABEL}={_endpoint_host(endpoint)}")
    _create("router", name, namespace, label, admin_credential, False, out)


#: Where a router's host is kept (`jumpstarter.controller.routers.HOST_LABEL`; not imported: heavy).
_ROUTER_HOST_LABEL = "jumpstarter.dev/router-host"


def _endpoint_host(endpoint: str) -> str:
    """The host of HOST, HOST:PORT or [V6]:PORT."""
    text = endpoint.strip()
    host, sep, port = text.rpartition(":")
    if not sep or (text.count(":") > 1 and not text.startswith("[")):
        host, port = text, ""
    host = host.strip("[]")
    if not host or (port and not port.isdigit()) or any(c in host for c in "/ "):
        raise click.BadParameter(f"{endpoint!r} is not HOST or HOST:PORT", param_hint="--endpoint")
    return host


@admin.command("get")
@click.argument("kind", type=KINDS)
@click.argument("name", required=False)
@namespace_option
@OUTPUT_OPTION
@admin_credential_option
@friendly
def get(kind: str, name: str | None, namespace: str, output: str | None, admin_credential: Path) -> None:
    """Show clients, exporters, routers or access policies (all of the namespace, or NAME)."""
    from jumpstarter.protocol.admin.v1 import admin_pb2

    if kind.startswith("polic"):
        from jumpstarter.cli.admin_policy import get_policies

        return get_policies(name, namespace, output, admin_credential)
    with _connect(admin_credential) as conn:
        stub = conn.admin_stub()
        if name:
            found = [conn.call(stub.GetIdentity, _ref(kind, namespace, name))]
        else:
            request = admin_pb2.ListIdentitiesRequest(kind=kind.rstrip("s"), namespace=namespace)
            found = list(conn.call(stub.ListIdentities, request).identities)
    structured = output in ("json", "yaml")  # labels as a mapping there, as `jmp get exporters` does
    items = [
        {
            "name": i.name, "namespace": i.namespace, "username": i.username or None,
            "labels": _merged(i) if structured else ",".join(f"{k}={v}" for k, v in sorted(_merged(i).items())),
            "created": i.created.ToDatetime().isoformat(timespec="seconds") + "Z",
        }
        for i in found
    ]
    print_items(items, ["name", "namespace", "labels", "created"], output)


def _merged(identity: Any) -> dict[str, str]:
    """An identity's labels: the administrator's over the ones it reports."""
    return {**identity.reported_labels, **identity.labels}


@admin.command("delete")
@click.argument("kind", type=KINDS)
@click.argument("name")
@namespace_option
@admin_credential_option
@friendly
def delete(kind: str, name: str, namespace: str, admin_credential: Path) -> None:
    """Delete a client, exporter or router (its tokens stop working at once and its leases end),
    or an access policy."""
    if kind.startswith("polic"):
        from jumpstarter.cli.admin_policy import delete_policy

        return delete_policy(name, namespace, admin_credential)
    with _connect(admin_credential) as conn:
        conn.call(conn.admin_stub().DeleteIdentity, _ref(kind, namespace, name))
    click.echo(f"deleted {kind.rstrip('s')} {namespace}/{name}")


@admin.group()
def rotate() -> None:
    """Issue a new token; the old one stops working at once."""


@rotate.command("client")
@click.argument("name")
@namespace_option
@_save_options
@admin_credential_option
@friendly
def rotate_client(name: str, namespace: str, save: bool, out: Path | None, admin_credential: Path) -> None:
    """Rotate the token of client NAME and print (or --save / --out) the new config."""
    with _connect(admin_credential) as conn:
        issued = conn.call(conn.admin_stub().RotateToken, _ref("client", namespace, name))
    click.echo(f"rotated the token of client {namespace}/{name}", err=True)
    _emit("client", issued, admin_credential, save, out)


def _register_policy_commands() -> None:
    from jumpstarter.cli.admin_policy import apply, apply_policy, create_policy

    create.add_command(admin_credential_option(create_policy))
    admin_credential_option(apply_policy)
    admin.add_command(apply)


_register_policy_commands()
