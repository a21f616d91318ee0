"""The results table: which of our figures is compared with which floor, and the target it must meet.

Pure logic over a flat dict of figures (keys as written by run.py: `bare.*`, `calls.*`,
`streams.*`, `startup.*`), so the table can be rebuilt from any bench/out/*.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_OPS = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b}


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: `ours` against `floor` (keys into the figures).

    `kind` is `ratio` (the target applies to ours/floor), `value` (it applies to ours itself) or
    `info` (no target: a diagnostic that explains other rows); `op` and `limit` are the target."""

    label: str
    ours: str
    floor: str
    unit: str
    kind: str
    op: str = ""
    limit: float = 0.0

    def target(self) -> str:
        """The target as written in the table."""
        if self.kind == "info":
            return "(diagnostic)"
        if self.kind == "ratio":
            return f"ratio {self.op} {self.limit:g}"
        return f"{self.op} {self.limit:,g} {self.unit}"

    def evaluate(self, figures: dict[str, float]) -> dict[str, Any]:
        """Our value, the floor, the ratio and whether the target is met (None: no target)."""
        ours, floor = figures.get(self.ours), figures.get(self.floor)
        ratio = ours / floor if ours is not None and floor else None
        value = ratio if self.kind == "ratio" else ours
        met = None if self.kind == "info" or value is None else _OPS[self.op](value, self.limit)
        return {
            "label": self.label,
            "ours": ours,
            "floor": floor,
            "unit": self.unit,
            "ratio": ratio,
            "target": self.target(),
            "met": met,
        }


def _unary_rows() -> list[Row]:
    rows = []
    for where, key in (("in-process", "inproc"), ("across processes", "remote")):
        for flavour, limit in (("async", 1.15), ("sync", 1.3)):
            rows.append(
                Row(f"unary p50, {flavour} method, {where}", f"calls.{key}.echo_{flavour}.p50_us",
                    "bare.unary.p50_us", "us", "ratio", "<=", limit)
            )
    for where, key in (("in-process", "inproc"), ("across processes", "remote")):
        for flavour in ("async", "sync"):
            rows.append(
                Row(f"unary p99/p50, {flavour} method, {where}", f"calls.{key}.echo_{flavour}.p99_over_p50",
                    "bare.unary.p99_over_p50", "x", "value", "<=", 2.0)
            )
    rows.append(
        Row("unary p50, async, in-process vs in-process bare server", "calls.inproc.echo_async.p50_us",
            "bare.unary_inproc.p50_us", "us", "info")
    )
    return rows


ROWS: list[Row] = [
    *_unary_rows(),
    Row("16 threads, across processes", "calls.remote.threads16_calls_per_s",
        "bare.unary.threads16_calls_per_s", "calls/s", "ratio", ">=", 0.8),
    Row("streaming call, in-process", "calls.inproc.streaming_items_per_s",
        "bare.streaming.items_per_s", "items/s", "value", ">=", 10_000),
    Row("streaming call, across processes", "calls.remote.streaming_items_per_s",
        "bare.streaming.items_per_s", "items/s", "value", ">=", 10_000),
    Row("byte stream 64 KiB one way, sync", "streams.sync.oneway_64k_MBps",
        "bare.stream.sync.oneway_64k_MBps", "MB/s", "ratio", ">=", 0.8),
    Row("byte stream 64 KiB one way, async", "streams.async.oneway_64k_MBps",
        "bare.stream.aio.oneway_64k_MBps", "MB/s", "ratio", ">=", 0.8),
    Row("byte stream 4 KiB client sends, sync", "streams.sync.oneway_4k_MBps",
        "bare.stream.sync.oneway_4k_MBps", "MB/s", "value", ">=", 100),
    Row("byte stream 4 KiB client sends, async", "streams.async.oneway_4k_MBps",
        "bare.stream.aio.oneway_4k_MBps", "MB/s", "value", ">=", 100),
    Row("byte stream echo 64 KiB, sync", "streams.sync.echo_64k_MBps",
        "bare.stream.sync.echo_64k_MBps", "MB/s", "ratio", ">=", 0.5),
    Row("byte stream echo 64 KiB, async", "streams.async.echo_64k_MBps",
        "bare.stream.aio.echo_64k_MBps", "MB/s", "ratio", ">=", 0.5),
    Row("fresh process: serve 10 drivers + 1 call, wall (floor: import grpc)", "startup.serve10.wall_ms",
        "startup.import_grpc.wall_ms", "ms", "value", "<=", 300),
    Row("fresh process: peak RSS (floor: import grpc)", "startup.serve10.peak_rss_MiB",
        "startup.import_grpc.peak_rss_MiB", "MiB", "value", "<=", 50),
    Row("INFO log per call, p50 logged/quiet, in-process", "calls.inproc.logging.logged_p50_us",
        "calls.inproc.logging.quiet_p50_us", "us", "ratio", "<", 2.0),
    Row("INFO log per call, p50 logged/quiet, across processes", "calls.remote.logging.logged_p50_us",
        "calls.remote.logging.quiet_p50_us", "us", "ratio", "<", 2.0),
]

#: Floor-only figures shown under the main table (what bare gRPC does on this machine).
FLOOR_FIGURES = [
    ("bare.stream.sync.oneway_4k_msgs_per_s", "msgs/s"),
    ("bare.stream.sync.oneway_64k_msgs_per_s", "msgs/s"),
    ("bare.stream.sync.oneway_1m_msgs_per_s", "msgs/s"),
    ("bare.stream.sync.oneway_1m_MBps", "MB/s"),
    ("bare.stream.aio.oneway_4k_msgs_per_s", "msgs/s"),
    ("bare.stream.aio.oneway_64k_msgs_per_s", "msgs/s"),
    ("bare.stream.aio.oneway_1m_msgs_per_s", "msgs/s"),
    ("bare.stream.aio.oneway_1m_MBps", "MB/s"),
    ("startup.empty.wall_ms", "ms"),
]


#: Message sizes named in the one-way stream figure keys.
MESSAGE_SIZES = {"4k": 4 << 10, "64k": 64 << 10, "1m": 1 << 20}


def add_derived(figures: dict[str, float]) -> dict[str, float]:
    """Add p99/p50 ratios next to every p50/p99 pair, and messages/s next to one-way MB/s."""
    out = dict(figures)
    for key, mbps in figures.items():
        for label, size in MESSAGE_SIZES.items():
            if key.endswith(f".oneway_{label}_MBps"):
                out[key[: -len("MBps")] + "msgs_per_s"] = mbps * 1e6 / size
    for key, p50 in figures.items():
        if key.endswith(".p50_us"):
            p99 = figures.get(key[: -len("p50_us")] + "p99_us")
            if p99 is not None and p50:
                out[key[: -len("p50_us")] + "p99_over_p50"] = p99 / p50
    return out


def evaluate(figures: dict[str, float]) -> list[dict[str, Any]]:
    """Every row of the table, evaluated."""
    figures = add_derived(figures)
    return [row.evaluate(figures) for row in ROWS]
