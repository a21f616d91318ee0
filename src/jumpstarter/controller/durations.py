"""Lease durations in the forms upstream's `--duration` accepts.

`30m`, `1h30m`, `1d3h`, `90s`, `1.5h` (Go-style units plus days), ISO 8601 `PT1H30M` / `P1DT2H`,
`HH:MM:SS` / `MM:SS`, and a bare number of seconds.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_GO_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_ISO_RE = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_CLOCK_RE = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def parse_duration(text: str) -> timedelta:
    """Parse a positive duration; raises ValueError naming the accepted forms."""
    value = text.strip()
    seconds = _seconds(value)
    if seconds is None:
        raise ValueError(
            f"invalid duration {text!r}: use forms like 30m, 1h30m, 1d3h, PT1H30M, 01:30:00 or seconds"
        )
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: it must be longer than zero")
    return timedelta(seconds=seconds)


def _seconds(value: str) -> float | None:
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    upper = value.upper()
    if upper.startswith("P"):
        m = _ISO_RE.match(upper)
        if m is None or upper in ("P", "PT") or upper.endswith("T"):
            return None
        parts = {k: float(v) for k, v in m.groupdict().items() if v is not None}
        return (
            parts.get("w", 0) * 7 * 86400
            + parts.get("d", 0) * 86400
            + parts.get("h", 0) * 3600
            + parts.get("m", 0) * 60
            + parts.get("s", 0)
        )
    m = _CLOCK_RE.match(value)
    if m is not None:
        hours, minutes, secs = m.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)
    if value and _GO_RE.sub("", value) == "":
        return sum(float(n) * _UNITS[unit] for n, unit in _GO_RE.findall(value))
    return None


def format_duration(delta: timedelta) -> str:
    """A compact form like `1d2h30m` (seconds only when not whole minutes)."""
    total = int(delta.total_seconds())
    if total <= 0:
        return "0s"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n)
    return text
