"""`jmp config`: create, list, select, edit and delete client and exporter config files.

Flags and aliases follow upstream (`jmp config exporter create ALIAS --namespace ... -o path`,
`jmp conf c ls`, ...). Values missing from the flags are prompted for only when stdin is a terminal
and `--nointeractive` was not given; otherwise the flags are all there is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from jumpstarter.cli.errors import friendly
from jumpstarter.cli.lazy import LazyGroup
from jumpstarter.cli.output import OUTPUT_OPTION, print_items

#: `jmp config e ...` / `jmp config c ...` (plural forms are resolved by LazyGroup).
NOUN_ALIASES = {"e": "exporter", "c": "client"}
#: Verb aliases shared with the rest of upstream's CLI.
VERB_ALIASES = {"ls": "list", "del": "delete", "d": "delete", "c": "create"}

PATH_OUTPUT = click.option(
    "-o", "--output", type=click.Choice(["path"]), default=None, help="Print only the path of the file."
)
NOINTERACTIVE = click.option("--nointeractive", is_flag=True, help="Never prompt; use the flags as given.")
INSECURE_TLS = click.option("-k", "--insecure-tls", is_flag=True, help="Do not verify the endpoint's TLS certificate.")
FORCE = click.option("--force", is_flag=True, help="Overwrite an existing config of the same alias.")


def _check_alias(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from jumpstarter.config.paths import validate_alias
    from jumpstarter.errors import ConfigurationError

    try:
        return validate_alias(value)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None


def _interactive(nointeractive: bool) -> bool:
    return not nointeractive and sys.stdin.isatty()


def _ask(label: str, value: str | None, *, hide: bool = False) -> str | None:
    """`value` when given, else the user's answer (empty answers mean "not set")."""
    if value is not None:
        return value
    answer = click.prompt(label, default="", show_default=False, hide_input=hide)
    return answer or None


def _confirm_insecure(insecure_tls: bool, interactive: bool) -> None:
    if insecure_tls and interactive:
        click.confirm("Skip TLS certificate verification of the endpoint (insecure)?", abort=True)


def _written(kind: str, alias: str, path: Path, output: str | None) -> None:
    if output == "path":
        click.echo(str(path))
    else:
        click.echo(f"{kind} config {alias!r} written to {path}")


def _print_list(kind: str, items: list[dict[str, Any]], columns: list[str], output: str | None, **header: Any) -> None:
    """A table, or upstream's `{apiVersion, kind: <Kind>List, items}` document for json/yaml."""
    if output in ("json", "yaml"):
        import json

        import yaml

        from jumpstarter.config.common import API_VERSION

        document = {"apiVersion": API_VERSION, "kind": f"{kind}List", **header, "items": items}
        text = json.dumps(document, indent=2) if output == "json" else yaml.safe_dump(document, sort_keys=False)
        click.echo(text.rstrip("\n"))
    else:
        print_items(items, columns, output, key="alias")


def _summary(config_type: Any, alias: str, path: Path) -> dict[str, Any]:
    """What `list` shows of one config file (never its tokens); unreadable files say why."""
    from jumpstarter.errors import ConfigurationError

    item: dict[str, Any] = {"alias": alias, "path": str(path)}
    try:
        config = config_type.from_file(path)
    except ConfigurationError as exc:
        item["error"] = str(exc).splitlines()[0]
        return item
    item.update(name=config.metadata.name, namespace=config.metadata.namespace, endpoint=config.endpoint)
    return item


@click.group(cls=LazyGroup, aliases=NOUN_ALIASES)
def config() -> None:
    """Manage client and exporter configurations."""


# ---- exporters ------------------------------------------------------------------------------


@config.group(cls=LazyGroup, aliases=VERB_ALIASES)
def exporter() -> None:
    """Manage exporter configs.

    They live in <config home>/exporters/ALIAS.yaml; /etc/jumpstarter/exporters/ALIAS.yaml is read too."""


@exporter.command("create")
@click.argument("alias", default="default", callback=_check_alias)
@click.option("--namespace", default=None, help="Namespace of the Exporter object on the controller.")
@click.option("--name", default=None, help="Name of the Exporter object on the controller.")
@click.option("--endpoint", default=None, help="Controller gRPC endpoint, host:port.")
@click.option("--token", default=None, help="Exporter token issued by the controller.")
@INSECURE_TLS
@NOINTERACTIVE
@FORCE
@PATH_OUTPUT
@friendly
def create_exporter(
    alias: str,
    namespace: str | None,
    name: str | None,
    endpoint: str | None,
    token: str | None,
    insecure_tls: bool,
    nointeractive: bool,
    force: bool,
    output: str | None,
) -> None:
    """Create an exporter config.

    Writes ALIAS (default: `default`); add drivers under `export:` with `jmp config exporter edit ALIAS`."""
    from jumpstarter.config import paths, store
    from jumpstarter.config.common import ObjectMeta, TLSConfig
    from jumpstarter.config.exporter import ExporterConfig
    from jumpstarter.errors import ConfigurationError

    target = paths.exporter_path(alias)
    if target.exists() and not force:
        raise ConfigurationError(
            f"exporter config {alias!r} already exists ({target}); change it with "
            f"`jmp config exporter edit {alias}`, or pass --force to replace it"
        )
    interactive = _interactive(nointeractive)
    if interactive:
        namespace = _ask("Namespace", namespace)
        name = _ask("Name", name)
        endpoint = _ask("Endpoint (host:port, empty for local use only)", endpoint)
        token = _ask("Token (hidden)", token, hide=True)
    _confirm_insecure(insecure_tls, interactive)
    config = ExporterConfig(
        metadata=ObjectMeta(namespace=namespace, name=name),
        endpoint=endpoint,
        token=token,
        tls=TLSConfig(insecure=insecure_tls),
    )
    _written("exporter", alias, store.save_exporter(config, alias), output)


@exporter.command("list")
@OUTPUT_OPTION
@friendly
def list_exporters(output: str | None) -> None:
    """List exporter configs.

    A user's config wins over a system-wide one of the same alias."""
    from jumpstarter.config import store
    from jumpstarter.config.exporter import ExporterConfig

    items = [_summary(ExporterConfig, alias, path) for alias, path in store.list_exporters().items()]
    _print_list("ExporterConfig", items, ["alias", "name", "endpoint", "path"], output)


@exporter.command("delete")
@click.argument("alias", callback=_check_alias)
@PATH_OUTPUT
@friendly
def delete_exporter(alias: str, output: str | None) -> None:
    """Delete an exporter config.

    Only the user's file is deleted, never a system-wide one."""
    from jumpstarter.config import paths, store

    path = store.delete_exporter(alias)
    click.echo(str(path) if output == "path" else f"exporter config {alias!r} deleted ({path})")
    shadowed = paths.find_exporter(alias)
    if shadowed is not None:
        click.echo(f"Warning: the system config {shadowed} has the same alias and is used from now on", err=True)


@exporter.command("edit")
@click.argument("alias", default="default", callback=_check_alias)
@friendly
def edit_exporter(alias: str) -> None:
    """Edit an exporter config, then check it.

    Opens ALIAS (default: `default`) in $VISUAL / $EDITOR; errors are reported with file and line."""
    from jumpstarter.config import paths
    from jumpstarter.config.drivers import plan_driver_tree
    from jumpstarter.config.exporter import ExporterConfig
    from jumpstarter.config.loading import ConfigNotFoundError
    from jumpstarter.errors import ConfigurationError

    path = paths.find_exporter(alias)
    if path is None:
        searched = ", ".join(str(d) for d in paths.exporter_dirs())
        raise ConfigNotFoundError(
            f"no exporter config named {alias!r} (looked in {searched}); "
            f"create it with `jmp config exporter create {alias}`"
        )
    click.edit(filename=str(path))
    try:
        edited = ExporterConfig.from_file(path)
        plan_driver_tree(edited.export, source=edited.source)
    except ConfigurationError as exc:
        click.echo(f"Error: {exc}", err=True)
        click.echo(f"The file keeps your changes; fix them with `jmp config exporter edit {alias}`.", err=True)
        sys.exit(2)
    click.echo(f"exporter config {alias!r} is valid ({path})")


# ---- clients --------------------------------------------------------------------------------


@config.group(cls=LazyGroup, aliases=VERB_ALIASES)
def client() -> None:
    """Manage client configs and the current client.

    They live in <config home>/clients/ALIAS.yaml; the current one is kept in <config home>/config.yaml."""


@client.command("create")
@click.argument("alias", callback=_check_alias)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the config to this file instead of the config home.",
)
@click.option("--namespace", default=None, help="Namespace of the Client object on the controller.")
@click.option("--name", default=None, help="Name of the Client object on the controller.")
@click.option("-e", "--endpoint", default=None, help="Controller gRPC endpoint, host:port.")
@click.option("-t", "--token", default=None, help="Client token issued by the controller.")
@click.option("-a", "--allow", default=None, help="Comma-separated driver client packages (globs) to load.")
@click.option("--unsafe", is_flag=True, help="Load any driver client package an exporter names (UNSAFE).")
@INSECURE_TLS
@NOINTERACTIVE
@FORCE
@PATH_OUTPUT
@friendly
def create_client(
    alias: str,
    out: str | None,
    namespace: str | None,
    name: str | None,
    endpoint: str | None,
    token: str | None,
    allow: str | None,
    unsafe: bool,
    insecure_tls: bool,
    nointeractive: bool,
    force: bool,
    output: str | None,
) -> None:
    """Create a client config.

    The first client config created becomes the current one."""
    from jumpstarter.config import paths, store
    from jumpstarter.config.client import ClientConfig, DriversConfig
    from jumpstarter.config.common import ObjectMeta, TLSConfig
    from jumpstarter.errors import ConfigurationError

    if out is None and paths.client_path(alias).exists() and not force:
        raise ConfigurationError(
            f"client config {alias!r} already exists ({paths.client_path(alias)}); "
            "pass --force to replace it, or delete it first"
        )
    interactive = _interactive(nointeractive)
    if interactive:
        namespace = _ask("Namespace", namespace)
        name = _ask("Name", name)
        endpoint = _ask("Endpoint (host:port)", endpoint)
        token = _ask("Token (hidden)", token, hide=True)
        if not unsafe:
            allow = _ask("Allowed driver client packages, comma-separated (optional)", allow)
    _confirm_insecure(insecure_tls, interactive)
    config = ClientConfig(
        metadata=ObjectMeta(namespace=namespace, name=name),
        endpoint=endpoint,
        token=token,
        tls=TLSConfig(insecure=insecure_tls),
        drivers=DriversConfig(allow=[a.strip() for a in (allow or "").split(",") if a.strip()], unsafe=unsafe),
    )
    if out is not None:
        path = Path(out)
        paths.atomic_write(path, config.to_yaml(), paths.SECRET_MODE)
    else:
        path = store.save_client(config, alias)
        if store.current_client() is None:
            store.use_client(alias)
    _written("client", alias, path, output)


@client.command("list")
@OUTPUT_OPTION
@friendly
def list_clients(output: str | None) -> None:
    """List client configs.

    The current one is marked with `*`."""
    from jumpstarter.config import store
    from jumpstarter.config.client import ClientConfig

    current = store.current_client()
    items = []
    for alias, path in store.list_clients().items():
        item = _summary(ClientConfig, alias, path)
        item["current"] = "*" if alias == current else ""
        items.append(item)
    if output in ("json", "yaml"):
        for item in items:
            item["current"] = bool(item["current"])
    _print_list("ClientConfig", items, ["current", "alias", "endpoint", "path"], output, currentConfig=current)


@client.command("use")
@click.argument("alias", callback=_check_alias)
@PATH_OUTPUT
@friendly
def use_client(alias: str, output: str | None) -> None:
    """Select the current client config."""
    from jumpstarter.config import store

    path = store.use_client(alias)
    click.echo(str(path) if output == "path" else f"current client: {alias}")


@client.command("delete")
@click.argument("alias", callback=_check_alias)
@PATH_OUTPUT
@friendly
def delete_client(alias: str, output: str | None) -> None:
    """Delete a client config.

    When it was the current one, another (if any) takes its place."""
    from jumpstarter.config import store

    was_current = store.current_client() == alias
    path = store.delete_client(alias)
    click.echo(str(path) if output == "path" else f"client config {alias!r} deleted ({path})")
    remaining = list(store.list_clients())
    if was_current and remaining:
        store.use_client(remaining[0])
        click.echo(f"current client is now {remaining[0]!r}", err=True)
