"""`jmp get exporters|leases`, `jmp create lease`, `jmp update lease`, `jmp delete leases`:
a client's view of the controller (upstream's `jumpstarter.client.v1` API)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from jumpstarter.cli.errors import friendly
from jumpstarter.cli.lazy import LazyGroup
from jumpstarter.cli.lease_args import (
    BEGIN_TIME_HELP,
    begin_time_pb,
    checked_selector,
    client_options,
    connect,
    duration_pb,
    duration_seconds,
    iso_time,
    lease_item,
    lease_phase,
    load_client_config,
    own_leases,
    short_name,
)
from jumpstarter.cli.output import OUTPUT_OPTION, print_items

STATUS_NAMES = {
    0: "Unspecified", 1: "Offline", 2: "Available", 3: "BeforeLeaseHook", 4: "LeaseReady",
    5: "AfterLeaseHook", 6: "BeforeLeaseHookFailed", 7: "AfterLeaseHookFailed",
}


# ---- get ---------------------------------------------------------------------------------------

@click.group(cls=LazyGroup, aliases={"e": "exporters", "l": "leases"})
def get() -> None:
    """Show exporters or leases."""


@get.command("exporters")
@client_options
@click.option("-l", "--selector", multiple=True, help="Label selector (repeatable, joined with ',').")
@click.option("--with", "with_", default="", metavar="leases,online,status", help="Extra columns.")
@OUTPUT_OPTION
@friendly
def get_exporters(client: str | None, client_config: Path | None, selector: tuple[str, ...], with_: str,
                  output: str | None) -> None:
    """List the exporters this client can see."""
    from jumpstarter.protocol.client.v1 import client_pb2

    extras = [w.strip() for w in with_.split(",") if w.strip()]
    unknown = set(extras) - {"leases", "online", "status"}
    if unknown:
        raise click.BadParameter(f"unknown column(s) {', '.join(sorted(unknown))}", param_hint="--with")
    conn, namespace = connect(client, client_config)
    with conn:
        stub = conn.client_stub()
        parent = f"namespaces/{namespace}"
        wanted = client_pb2.ListExportersRequest(parent=parent, filter=checked_selector(selector))
        found = conn.call(stub.ListExporters, wanted)
        leases = own_leases(conn, namespace, only_active=True, all_clients=True) if "leases" in extras else []
    held = {short_name(lease.exporter): lease for lease in leases if lease.HasField("exporter")}
    items = []
    for e in found.exporters:
        item: dict[str, Any] = {
            "name": short_name(e.name),
            "labels": dict(e.labels) if output in ("json", "yaml") else ",".join(
                f"{k}={v}" for k, v in sorted(e.labels.items())
            ),
            "online": e.online,
            "status": STATUS_NAMES.get(e.status, str(e.status)),
        }
        if "leases" in extras:
            lease = held.get(item["name"])
            item["lease"] = f"{short_name(lease.name)} ({short_name(lease.client)})" if lease is not None else None
        items.append(item)
    print_items(items, ["name", "labels", *(("lease",) if "leases" in extras else ()),
                        *[c for c in ("online", "status") if c in extras]], output)


@get.command("leases")
@client_options
@click.option("-a", "--all", "all_", is_flag=True, help="Include ended leases.")
@click.option("-A", "--all-clients", is_flag=True, help="Every client's leases in the namespace, not only this one's.")
@OUTPUT_OPTION
@friendly
def get_leases(client: str | None, client_config: Path | None, all_: bool, all_clients: bool,
               output: str | None) -> None:
    """List this client's leases (active ones unless --all; every client's with --all-clients)."""
    conn, namespace = connect(client, client_config)
    with conn:
        leases = own_leases(conn, namespace, only_active=not all_, all_clients=all_clients)
    items = [lease_item(lease) for lease in leases]
    if output is None:  # the table: a lease that has not begun shows when it is to begin
        for item in items:
            if item["begin"] is None and item["begin_time"] is not None:
                item["begin"] = f"{item['begin_time']} (scheduled)"
    columns = ["name", *(("client",) if all_clients else ()), "selector", "exporter", "phase", "message", "begin",
               "expires"]
    print_items(items, columns, output)


# ---- create / update / delete ------------------------------------------------------------------

@click.group(cls=LazyGroup, aliases={"l": "lease", "leases": "lease"})
def create() -> None:
    """Create a lease."""


@create.command("lease")
@client_options
@click.option("-l", "--selector", multiple=True, help="Label selector (repeatable, joined with ',').")
@click.option("-n", "--name", "exporter_name", default=None, help="Lease this exporter by name.")
@click.option("--duration", required=True, help="30m, 1h30m, 1d3h, PT1H30M, 01:30:00 or seconds.")
@click.option("--begin-time", default=None, metavar="TIME", help=BEGIN_TIME_HELP)
@click.option("--lease-id", default="", help="Name of the lease (default: generated).")
@click.option("--tag", multiple=True, metavar="KEY=VALUE", help="Tag (repeatable).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the lease is ready.")
@click.option("--acquisition-timeout", type=float, default=7200, show_default=True, help="Seconds to wait.")
@OUTPUT_OPTION
@friendly
def create_lease(client: str | None, client_config: Path | None, selector: tuple[str, ...],
                 exporter_name: str | None, duration: str, begin_time: str | None, lease_id: str,
                 tag: tuple[str, ...], wait: bool, acquisition_timeout: float, output: str | None) -> None:
    """Request a lease; by default wait (showing the queue position) until an exporter is assigned.

    With --begin-time the lease waits for that time, then gets an exporter (its duration counts
    from when it does); --acquisition-timeout then counts from the begin time."""
    from jumpstarter.client.controller import ControllerClient
    from jumpstarter.protocol.client.v1 import client_pb2

    if not selector and not exporter_name:
        raise click.UsageError("give a label selector (-l k=v) or an exporter name (-n NAME)")
    tags = dict(t.partition("=")[::2] for t in tag)
    length = duration_pb(duration_seconds(duration))
    spec = client_pb2.Lease(selector=checked_selector(selector), duration=length, tags=tags)
    if exporter_name:
        spec.exporter_name = exporter_name
    begin = begin_time_pb(begin_time)
    if begin is not None:
        spec.begin_time.CopyFrom(begin)
    config = load_client_config(client, client_config)
    with ControllerClient(config) as conn:
        lease = conn.call(conn.client_stub().CreateLease, client_pb2.CreateLeaseRequest(
            parent=f"namespaces/{config.metadata.namespace or 'default'}", lease_id=lease_id, lease=spec))
    phase, message = lease_phase(lease)
    if wait and phase == "Pending":
        import asyncio

        from jumpstarter.client.signals import terminate_as_interrupt
        from jumpstarter.errors import ExporterBusyError

        until_begin = max(0.0, begin.ToNanoseconds() / 1e9 - time.time()) if begin is not None else 0.0
        try:
            with terminate_as_interrupt():
                lease = asyncio.run(_wait_granted(config, short_name(lease.name), until_begin + acquisition_timeout))
        except (KeyboardInterrupt, ExporterBusyError):  # given up on (Ctrl-C, SIGTERM, timeout)
            _release_abandoned(config, short_name(lease.name))
            raise
        phase, message = lease_phase(lease)
    if phase in ("Unsatisfiable", "Invalid"):
        from jumpstarter.errors import ArgumentError

        raise ArgumentError(f"lease {short_name(lease.name)} is {phase.lower()}: {message}")
    _print_leases([lease], output)


async def _wait_granted(config: Any, name: str, patience: float) -> Any:
    """The lease once Ready (the controller pushes its grant and queue positions)."""
    from jumpstarter.client.lease import ControllerSession, wait_granted

    session = ControllerSession(config)
    try:
        return await wait_granted(session, name, lambda line: click.echo(line, err=True), patience)
    finally:
        await session.close()


def _release_abandoned(config: Any, name: str) -> None:
    """Release a lease nobody waits for any more (Ctrl-C, SIGTERM, --acquisition-timeout), so it
    does not take an exporter later that nobody uses; quietly, the original error is what counts."""
    from jumpstarter.client.controller import ControllerClient
    from jumpstarter.protocol.client.v1 import client_pb2

    namespace = config.metadata.namespace or "default"
    try:
        with ControllerClient(config) as conn:
            request = client_pb2.DeleteLeaseRequest(name=f"namespaces/{namespace}/leases/{name}")
            conn.call(conn.client_stub().DeleteLease, request)
    except Exception:
        return
    click.echo(f"released lease {name}", err=True)


def _print_leases(leases: list[Any], output: str | None) -> None:
    items = [lease_item(lease) for lease in leases]
    print_items(items, ["name", "selector", "exporter", "phase", "message", "expires"], output)


@click.group(cls=LazyGroup, aliases={"l": "lease", "leases": "lease"})
def update() -> None:
    """Change a lease."""


@update.command("lease")
@client_options
@click.argument("name")
@click.option("--duration", default=None,
              help="New total duration (30m, 1h30m, PT1H, ...), counted from when the lease began.")
@click.option("--begin-time", default=None, metavar="TIME", help="New begin time (only before the lease starts; "
              "ISO 8601 or relative +10m).")
@click.option("--to-client", default=None, metavar="CLIENT",
              help="Transfer the lease to this client of the same namespace.")
@OUTPUT_OPTION
@friendly
def update_lease(client: str | None, client_config: Path | None, name: str, duration: str | None,
                 begin_time: str | None, to_client: str | None, output: str | None) -> None:
    """Change the duration or begin time of lease NAME, or hand it to another client.

    A new duration counts from when the lease began: the old and new end times are printed, and a
    duration that is already over ends the lease at once (Expired). Only the lease's owner may
    change it; after a transfer the old owner can no longer use it."""
    from google.protobuf import field_mask_pb2

    from jumpstarter.protocol.client.v1 import client_pb2

    if duration is None and begin_time is None and to_client is None:
        raise click.UsageError("give --duration, --begin-time and/or --to-client")
    seconds = duration_seconds(duration) if duration is not None else None
    begin = begin_time_pb(begin_time)  # bad input is refused before anything is sent
    conn, namespace = connect(client, client_config)
    spec = client_pb2.Lease(name=f"namespaces/{namespace}/leases/{name}")
    paths = []
    if seconds is not None:
        spec.duration.CopyFrom(duration_pb(seconds))
        paths.append("duration")
    if begin is not None:
        spec.begin_time.CopyFrom(begin)
        paths.append("begin_time")
    if to_client is not None:
        spec.client = to_client if "/" in to_client else f"namespaces/{namespace}/clients/{to_client}"
        paths.append("client")
    with conn:
        stub = conn.client_stub()
        before = conn.call(stub.GetLease, client_pb2.GetLeaseRequest(name=spec.name)) if duration else None
        request = client_pb2.UpdateLeaseRequest(lease=spec, update_mask=field_mask_pb2.FieldMask(paths=paths))
        lease = conn.call(stub.UpdateLease, request)
    if before is not None:
        click.echo(f"lease {name}: {_end_change(before, lease)}", err=True)
    if to_client is not None:
        click.echo(f"lease {name} now belongs to client {short_name(lease.client)}", err=True)
    _print_leases([lease], output)


def _end_change(before: Any, after: Any) -> str:
    """How a lease's end time moved, e.g. `ends 10:30:00Z instead of 11:00:00Z (30m earlier)`."""
    from jumpstarter.controller.durations import format_duration

    if not before.HasField("effective_end_time") or not after.HasField("effective_end_time"):
        old = format_duration(before.duration.ToTimedelta())
        new = format_duration(after.duration.ToTimedelta())
        return f"duration {new} instead of {old} (it has not started)"
    old_end, new_end = before.effective_end_time.ToDatetime(), after.effective_end_time.ToDatetime()
    was = iso_time(before.effective_end_time)
    if lease_phase(after)[0] == "Ended":
        return f"ended at once: the new duration was already over (it was to end {was})"
    now = iso_time(after.effective_end_time)
    if new_end == old_end:
        return f"end time unchanged ({now})"
    delta = format_duration(abs(new_end - old_end))
    change = f"extended by {delta}" if new_end > old_end else f"shortened by {delta}"
    return f"now ends {now} instead of {was} ({change})"


@click.group(cls=LazyGroup, aliases={"l": "leases", "lease": "leases"})
def delete() -> None:
    """Release leases."""


@delete.command("leases")
@client_options
@click.argument("names", nargs=-1)
@click.option("-a", "--all", "all_", is_flag=True, help="Release all of this client's active leases.")
@OUTPUT_OPTION
@friendly
def delete_leases(client: str | None, client_config: Path | None, names: tuple[str, ...], all_: bool,
                  output: str | None) -> None:
    """Release leases NAME... (or --all of this client's)."""
    from jumpstarter.protocol.client.v1 import client_pb2

    if not names and not all_:
        raise click.UsageError("give lease names or --all")
    conn, namespace = connect(client, client_config)
    with conn:
        stub = conn.client_stub()
        wanted = list(names)
        if all_:
            wanted += [short_name(lease.name) for lease in own_leases(conn, namespace, only_active=True)]
        for name in wanted:
            conn.call(stub.DeleteLease, client_pb2.DeleteLeaseRequest(name=f"namespaces/{namespace}/leases/{name}"))
            if output in (None, "name"):
                click.echo(name if output == "name" else f"released lease {name}")
    if output in ("json", "yaml"):
        print_items([{"name": name, "released": True} for name in wanted], ["name"], output)
