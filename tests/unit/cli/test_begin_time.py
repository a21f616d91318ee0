"""`--begin-time` parsing: ISO 8601 with or without a zone, relative times, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from jumpstarter.cli.lease_args import parse_begin_time

NOW = datetime(2026, 5, 4, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-04T09:00:00Z", datetime(2026, 5, 4, 9, 0, tzinfo=UTC)),
        ("2026-05-04T09:00:00z", datetime(2026, 5, 4, 9, 0, tzinfo=UTC)),
        ("2026-05-04T11:00+02:00", datetime(2026, 5, 4, 9, 0, tzinfo=UTC)),
        ("2026-05-04T09:00:00.250000+00:00", datetime(2026, 5, 4, 9, 0, 0, 250000, tzinfo=UTC)),
        ("+10m", NOW + timedelta(minutes=10)),
        (" +1h30m ", NOW + timedelta(hours=1, minutes=30)),
        ("+PT2H", NOW + timedelta(hours=2)),
        ("2020-01-01T00:00:00Z", datetime(2020, 1, 1, tzinfo=UTC)),  # the past: the controller starts it now
    ],
)
def test_accepted(text: str, expected: datetime) -> None:
    assert parse_begin_time(text, NOW) == expected


def test_without_a_zone_is_local_time() -> None:
    parsed = parse_begin_time("2026-05-04 09:00", NOW)
    assert parsed.tzinfo is not None
    assert parsed.replace(tzinfo=None) == datetime(2026, 5, 4, 9, 0)
    assert parsed.utcoffset() == datetime(2026, 5, 4, 9, 0).astimezone().utcoffset()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tomorrow", "invalid begin time 'tomorrow': use ISO 8601"),
        ("2026-13-01T00:00:00Z", "invalid begin time"),
        ("+soon", "invalid relative begin time '+soon'"),
        ("+0s", "invalid relative begin time"),
        ("", "invalid begin time"),
        ("2030-01-01T00:00:00Z", "more than a year ahead"),
    ],
)
def test_refused(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace("+", r"\+")):
        parse_begin_time(text, NOW)


def test_other_zone_offsets_compare_as_instants() -> None:
    east = timezone(timedelta(hours=9))
    assert parse_begin_time("2026-05-04T16:00:00+09:00", NOW) == datetime(2026, 5, 4, 16, 0, tzinfo=east)
