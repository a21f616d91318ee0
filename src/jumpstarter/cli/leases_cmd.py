"""`jmp get exporters|leases`, `jmp create lease`, `jmp update lease`, `jmp delete leases`:
a client's view of the controller (upstream's `jumpstarter.client.v1` API)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from jumpstarter.cli.errors import friendly
from jumpstarter.cli.lazy import LazyGroup
from jumpstarter.cli.output import OUTPUT_OPTION, print_items

STATUS_NAMES = {
    0: "Unspecified", 1: "Offline", 2: "Available", 3: "BeforeLeaseHook", 4: "LeaseReady",
    5: "AfterLeaseHook", 6: "BeforeLeaseHookFailed", 7: "AfterLeaseHookFailed",
}


def client_options(func: Any) -> Any:
    """`--client ALIAS` / `--client-config FILE` (default: the current client)."""
    func = click.option("--client-config", "client_config", type=click.Path(dir_okay=False, path_type=Path),
                        default=None, help="Path of a client config file.")(func)
    func = click.option("--client", "client", default=None, metavar="ALIAS",
                        help="Alias of a client config (default: the current client).")(func)
    return func


def load_client_config(client: str | None, client_config: Path | None) -> Any:
    """The client config named by `--client` / `--client-config`, else the current one."""
    from jumpstarter.config import store
    from jumpstarter.config.client import ClientConfig
    from jumpstarter.errors import ConfigurationError

    if client and client_config:
        raise click.UsageError("give either --client or --client-config, not both")
    if client_config is not None:
        return ClientConfig.from_file(client_config)
    alias = client or store.current_client()
    if alias is None:
        raise ConfigurationError(
            "no client selected: pass --client ALIAS, or choose one with `jmp config client use ALIAS`"
        )
    return store.load_client(alias)


def _connect(client: str | None, client_config: Path | None) -> Any:
    from jumpstarter.client.controller import ControllerClient

    config = load_client_config(client, client_config)
    return ControllerClient(config), config.metadata.namespace or "default"


def _own_leases(conn: Any, namespace: str, only_active: bool, all_clients: bool = False) -> list[Any]:
    """The leases of the namespace that belong to this client (every client's with `all_clients`)."""
    from jumpstarter.protocol.client.v1 import client_pb2

    request = client_pb2.ListLeasesRequest(parent=f"namespaces/{namespace}", only_active=only_active)
    leases = list(conn.call(conn.client_stub().ListLeases, request).leases)
    me = conn.config.metadata.name
    if all_clients or not me:
        return leases
    return [lease for lease in leases if _short(lease.client) == me]


def checked_selector(selector: tuple[str, ...]) -> str:
    """The `-l` options joined with `,`, checked here so that a malformed selector is a usage
    error (exit code 2, a caret under the offending token) before anything is sent."""
    from jumpstarter.controller.selectors import parse_selector
    from jumpstarter.errors import ConfigurationError

    text = ",".join(selector)
    try:
        parse_selector(text)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return text


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _time(ts: Any) -> str | None:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return str(ts.ToDatetime().isoformat(timespec="seconds") + "Z")


def lease_phase(lease: Any) -> tuple[str, str]:
    """(phase, message) of a client.v1 Lease (see `jumpstarter.client.lease.lease_phase`)."""
    from jumpstarter.client.lease import lease_phase as phase_of

    return phase_of(lease)


def lease_item(lease: Any) -> dict[str, Any]:
    """A lease as one row / JSON object."""
    from jumpstarter.client.lease import ended_message

    phase, message = lease_phase(lease)
    if phase == "Ended":  # with the why: `released (exporter board1 went offline)`, not just `Released`
        message = ended_message(lease)
    return {
        "name": _short(lease.name),
        "client": _short(lease.client),
        "selector": lease.selector,
        "exporter": _short(lease.exporter) if lease.HasField("exporter") else None,
        "phase": phase,
        "message": message,
        "duration": lease.duration.ToTimedelta().total_seconds() if lease.HasField("duration") else None,
        "begin_time": _time(lease.begin_time) if lease.HasField("begin_time") else None,
        "begin": _time(lease.effective_begin_time) if lease.HasField("effective_begin_time") else None,
        "expires": _time(lease.effective_end_time) if lease.HasField("effective_end_time") else None,
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
    conn, namespace = _connect(client, client_config)
    with conn:
        stub = conn.client_stub()
        parent = f"namespaces/{namespace}"
        wanted = client_pb2.ListExportersRequest(parent=parent, filter=checked_selector(selector))
        found = conn.call(stub.ListExporters, wanted)
        leases = _own_leases(conn, namespace, only_active=True, all_clients=True) if "leases" in extras else []
    held = {_short(lease.exporter): lease for lease in leases if lease.HasField("exporter")}
    items = []
    for e in found.exporters:
        item: dict[str, Any] = {
            "name": _short(e.name),
            "labels": dict(e.labels) if output in ("json", "yaml") else ",".join(
                f"{k}={v}" for k, v in sorted(e.labels.items())
            ),
            "online": e.online,
            "status": STATUS_NAMES.get(e.status, str(e.status)),
        }
        if "leases" in extras:
            lease = held.get(item["name"])
            item["lease"] = f"{_short(lease.name)} ({_short(lease.client)})" if lease is not None else None
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
    conn, namespace = _connect(client, client_config)
    with conn:
        leases = _own_leases(conn, namespace, only_active=not all_, all_clients=all_clients)
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


def duration_pb(seconds: float) -> Any:
    """A protobuf Duration."""
    from google.protobuf import duration_pb2

    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def _duration(text: str) -> float:
    from jumpstarter.controller.durations import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None


def parse_begin_time(text: str, now: datetime) -> datetime:
    """A begin time: ISO 8601 with a timezone (`2026-05-01T09:00:00Z`, `...+02:00`), without one
    (local time), or relative to `now` (`+10m`, `+1h30m`). Raises ValueError saying what is accepted."""
    from datetime import timedelta

    from jumpstarter.controller.durations import parse_duration

    value = text.strip()
    if value.startswith("+"):
        try:
            return now + parse_duration(value[1:])
        except ValueError:
            raise ValueError(f"invalid relative begin time {text!r}: use +DURATION, e.g. +10m or +1h30m") from None
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        raise ValueError(
            f"invalid begin time {text!r}: use ISO 8601 like 2026-05-01T09:00:00Z, 2026-05-01T11:00+02:00, "
            "2026-05-01 09:00 (local time) or a relative +10m"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time
    if parsed - now > timedelta(days=366):
        raise ValueError(f"begin time {text!r} is more than a year ahead")
    return parsed


def _begin_time(text: str | None) -> Any:
    """`--begin-time` as a protobuf Timestamp (None when not given)."""
    if text is None:
        return None
    from google.protobuf import timestamp_pb2

    try:
        when = parse_begin_time(text, datetime.now(UTC))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--begin-time") from None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when.astimezone(UTC))
    return ts


BEGIN_TIME_HELP = (
    "Start at this time: ISO 8601 (2026-05-01T09:00:00Z, 2026-05-01T11:00+02:00, or without a zone: local time) "
    "or relative (+10m). A time in the past means now."
)


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
    spec = client_pb2.Lease(selector=checked_selector(selector), duration=duration_pb(_duration(duration)), tags=tags)
    if exporter_name:
        spec.exporter_name = exporter_name
    begin = _begin_time(begin_time)
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
                lease = asyncio.run(_wait_granted(config, _short(lease.name), until_begin + acquisition_timeout))
        except (KeyboardInterrupt, ExporterBusyError):  # given up on (Ctrl-C, SIGTERM, timeout)
            _release_abandoned(config, _short(lease.name))
            raise
        phase, message = lease_phase(lease)
    if phase in ("Unsatisfiable", "Invalid"):
        from jumpstarter.errors import ArgumentError

        raise ArgumentError(f"lease {_short(lease.name)} is {phase.lower()}: {message}")
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
    seconds = _duration(duration) if duration is not None else None
    begin = _begin_time(begin_time)  # bad input is refused before anything is sent
    conn, namespace = _connect(client, client_config)
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
        click.echo(f"lease {name} now belongs to client {_short(lease.client)}", err=True)
    _print_leases([lease], output)


def _end_change(before: Any, after: Any) -> str:
    """How a lease's end time moved, e.g. `ends 10:30:00Z instead of 11:00:00Z (30m earlier)`."""
    from jumpstarter.controller.durations import format_duration

    if not before.HasField("effective_end_time") or not after.HasField("effective_end_time"):
        old = format_duration(before.duration.ToTimedelta())
        new = format_duration(after.duration.ToTimedelta())
        return f"duration {new} instead of {old} (it has not started)"
    old_end, new_end = before.effective_end_time.ToDatetime(), after.effective_end_time.ToDatetime()
    was = _time(before.effective_end_time)
    if lease_phase(after)[0] == "Ended":
        return f"ended at once: the new duration was already over (it was to end {was})"
    now = _time(after.effective_end_time)
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
    conn, namespace = _connect(client, client_config)
    with conn:
        stub = conn.client_stub()
        wanted = list(names)
        if all_:
            wanted += [_short(lease.name) for lease in _own_leases(conn, namespace, only_active=True)]
        for name in wanted:
            conn.call(stub.DeleteLease, client_pb2.DeleteLeaseRequest(name=f"namespaces/{namespace}/leases/{name}"))
            if output in (None, "name"):
                click.echo(name if output == "name" else f"released lease {name}")
    if output in ("json", "yaml"):
        print_items([{"name": name, "released": True} for name in wanted], ["name"], output)
