"""What the lease commands (and `jmp shell -l`) share: which client config they act as and its
connection, label selectors checked before anything is sent, durations and begin times as the
user types them, and leases as table rows / JSON objects."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click


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


def connect(client: str | None, client_config: Path | None) -> Any:
    """(connection to the controller, namespace) of the client config named by the options."""
    from jumpstarter.client.controller import ControllerClient

    config = load_client_config(client, client_config)
    return ControllerClient(config), config.metadata.namespace or "default"


def own_leases(conn: Any, namespace: str, only_active: bool, all_clients: bool = False) -> list[Any]:
    """The leases of the namespace that belong to this client (every client's with `all_clients`)."""
    from jumpstarter.protocol.client.v1 import client_pb2

    request = client_pb2.ListLeasesRequest(parent=f"namespaces/{namespace}", only_active=only_active)
    leases = list(conn.call(conn.client_stub().ListLeases, request).leases)
    me = conn.config.metadata.name
    if all_clients or not me:
        return leases
    return [lease for lease in leases if short_name(lease.client) == me]


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


def short_name(name: str) -> str:
    """The last part of a resource name (`namespaces/ns/leases/NAME` -> `NAME`)."""
    return name.rsplit("/", 1)[-1]


def iso_time(ts: Any) -> str | None:
    """A protobuf Timestamp as ISO 8601 UTC (None when unset)."""
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
        "name": short_name(lease.name),
        "client": short_name(lease.client),
        "selector": lease.selector,
        "exporter": short_name(lease.exporter) if lease.HasField("exporter") else None,
        "phase": phase,
        "message": message,
        "duration": lease.duration.ToTimedelta().total_seconds() if lease.HasField("duration") else None,
        "begin_time": iso_time(lease.begin_time) if lease.HasField("begin_time") else None,
        "begin": iso_time(lease.effective_begin_time) if lease.HasField("effective_begin_time") else None,
        "expires": iso_time(lease.effective_end_time) if lease.HasField("effective_end_time") else None,
    }


def duration_pb(seconds: float) -> Any:
    """A protobuf Duration."""
    from google.protobuf import duration_pb2

    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def duration_seconds(text: str) -> float:
    """`--duration` in seconds (30m, 1h30m, PT1H, 01:30:00, seconds); a usage error otherwise."""
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


def begin_time_pb(text: str | None) -> Any:
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
