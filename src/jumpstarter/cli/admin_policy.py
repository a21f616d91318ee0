"""`jmp admin create|get|delete policy`: access policies (which clients may lease which exporters,
for how long, with which priority). Registered on the `jmp admin` groups by `admin_cmd`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from jumpstarter.cli.errors import friendly
from jumpstarter.cli.output import OUTPUT_OPTION, print_items

COLUMNS = ["name", "namespace", "exporter_selector", "clients", "client_selector", "maximum_duration", "priority"]


def _admin() -> Any:
    # imported late: admin_cmd imports this module to register the commands
    from jumpstarter.cli import admin_cmd

    return admin_cmd


def _check_selector(text: str, option: str) -> str:
    """A selector checked here too, so a typo is reported before anything is sent."""
    from jumpstarter.controller.selectors import parse_selector

    try:
        parse_selector(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    return text.strip()


def policy_item(policy: Any, structured: bool) -> dict[str, Any]:
    """A policy as one row (or JSON/YAML object when `structured`)."""
    from jumpstarter.controller.durations import format_duration

    maximum = policy.maximum_duration.ToTimedelta() if policy.HasField("maximum_duration") else None
    return {
        "name": policy.name,
        "namespace": policy.namespace,
        "exporter_selector": policy.exporter_selector,
        "clients": list(policy.clients) if structured else ",".join(policy.clients) or None,
        "client_selector": policy.client_selector if policy.HasField("client_selector") else None,
        "maximum_duration": format_duration(maximum) if maximum is not None else None,
        "priority": policy.priority,
    }


@click.command("policy")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace.")
@click.option("--exporter-selector", required=True, metavar="SELECTOR",
              help="Label selector of the exporters it governs ('' for every exporter of the namespace).")
@click.option("--client", "clients", multiple=True, metavar="NAME",
              help="Admit this client of the namespace (repeatable).")
@click.option("--client-selector", default=None, metavar="SELECTOR", help="Admit clients whose labels match.")
@click.option("--maximum-duration", default=None, metavar="DURATION",
              help="Longest lease the admitted clients may take (30m, 8h, 1d, ...; default: no limit).")
@click.option("--priority", type=int, default=0, show_default=True,
              help="A client's exporters with a higher-priority policy are handed out first.")
@click.option("--replace", is_flag=True, help="Replace a policy of that name instead of failing.")
@OUTPUT_OPTION
@friendly
def create_policy(name: str, namespace: str, exporter_selector: str, clients: tuple[str, ...],
                  client_selector: str | None, maximum_duration: str | None, priority: int, replace: bool,
                  output: str | None, admin_credential: Path) -> None:
    """Create access policy NAME: only the clients it admits may lease the exporters it selects.

    Exporters no policy selects stay open to every client of their namespace; clients of other
    namespaces never get them. Waiting leases are judged by the new policy at once."""
    from jumpstarter.protocol.admin.v1 import admin_pb2

    message = admin_pb2.Policy(
        namespace=namespace, name=name, exporter_selector=_check_selector(exporter_selector, "--exporter-selector"),
        clients=list(clients), priority=priority,
    )
    if client_selector is not None:
        message.client_selector = _check_selector(client_selector, "--client-selector")
    if maximum_duration is not None:
        from jumpstarter.controller.durations import parse_duration

        try:
            message.maximum_duration.FromTimedelta(parse_duration(maximum_duration))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--maximum-duration") from None
    if not clients and client_selector is None:
        click.echo("warning: the policy admits no client: nobody may lease the exporters it selects", err=True)
    with _admin()._connect(admin_credential) as conn:
        request = admin_pb2.CreatePolicyRequest(policy=message, replace=replace)
        created = conn.call(conn.admin_stub().CreatePolicy, request)
    click.echo(f"{'saved' if replace else 'created'} policy {namespace}/{name}", err=True)
    if output is not None:
        print_items([policy_item(created, output != "name")], COLUMNS, output)


def get_policies(name: str | None, namespace: str, output: str | None, admin_credential: Path) -> None:
    """Print the policies of a namespace (or policy NAME)."""
    from jumpstarter.protocol.admin.v1 import admin_pb2

    with _admin()._connect(admin_credential) as conn:
        stub = conn.admin_stub()
        if name:
            found = [conn.call(stub.GetPolicy, admin_pb2.PolicyRef(namespace=namespace, name=name))]
        else:
            found = list(conn.call(stub.ListPolicies, admin_pb2.ListPoliciesRequest(namespace=namespace)).policies)
    print_items([policy_item(p, output in ("json", "yaml")) for p in found], COLUMNS, output)


def delete_policy(name: str, namespace: str, admin_credential: Path) -> None:
    """Delete policy NAME; waiting leases are judged without it at once."""
    from jumpstarter.protocol.admin.v1 import admin_pb2

    with _admin()._connect(admin_credential) as conn:
        conn.call(conn.admin_stub().DeletePolicy, admin_pb2.PolicyRef(namespace=namespace, name=name))
    click.echo(f"deleted policy {namespace}/{name}")


@click.group("apply")
def apply() -> None:
    """Create or replace objects from files."""


@apply.command("policy")
@click.option("-f", "--filename", "path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="An ExporterAccessPolicy YAML file (upstream's CRD shape).")
@friendly
def apply_policy(path: Path, admin_credential: Path) -> None:
    """Create or replace the access policies of an ExporterAccessPolicy file.

    Each `spec.policies[i].from[j]` becomes one policy (named NAME when there is only one, else
    NAME.i.j); policies an earlier version of the file made and this one no longer has are deleted."""
    from jumpstarter.config.access_policy import ExporterAccessPolicy, owned_by
    from jumpstarter.protocol.admin.v1 import admin_pb2

    document = ExporterAccessPolicy.from_file(path)
    wanted = document.policies()
    name, namespace = document.metadata.name, document.metadata.namespace
    with _admin()._connect(admin_credential) as conn:
        stub = conn.admin_stub()
        for policy in wanted:
            message = admin_pb2.Policy(
                namespace=policy.namespace, name=policy.name, exporter_selector=policy.exporter_selector,
                client_selector=policy.client_selector, priority=policy.priority,
            )
            if policy.maximum_duration is not None:
                message.maximum_duration.FromNanoseconds(int(policy.maximum_duration * 1e9))
            conn.call(stub.CreatePolicy, admin_pb2.CreatePolicyRequest(policy=message, replace=True))
        existing = conn.call(stub.ListPolicies, admin_pb2.ListPoliciesRequest(namespace=namespace)).policies
        keep = {p.name for p in wanted}
        stale = [p.name for p in existing if owned_by(name, p.name) and p.name not in keep]
        for old in stale:
            conn.call(stub.DeletePolicy, admin_pb2.PolicyRef(namespace=namespace, name=old))
    click.echo(f"applied policy {namespace}/{name}: {', '.join(sorted(keep))}"
               + (f" (deleted {', '.join(stale)})" if stale else ""))
