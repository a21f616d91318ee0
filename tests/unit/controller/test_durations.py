"""Lease durations in upstream's `--duration` forms."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jumpstarter.controller.durations import format_duration, parse_duration

VALID = [
    ("30m", timedelta(minutes=30)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("1d3h", timedelta(days=1, hours=3)),
    ("90s", timedelta(seconds=90)),
    ("1.5h", timedelta(minutes=90)),
    ("500ms", timedelta(milliseconds=500)),
    ("PT1H30M", timedelta(hours=1, minutes=30)),
    ("P1DT2H", timedelta(days=1, hours=2)),
    ("pt45s", timedelta(seconds=45)),
    ("P1W", timedelta(weeks=1)),
    ("01:30:00", timedelta(hours=1, minutes=30)),
    ("5:00", timedelta(minutes=5)),
    ("3600", timedelta(hours=1)),
    (" 10m ", timedelta(minutes=10)),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_valid(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0", "0s", "PT", "P", "P1DT", "abc", "10x", "1h-5m", "-5m", "1:2:3:4", "m"])
def test_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(1800, "30m"), (93784, "1d2h3m4s"), (0, "0s")])
def test_format(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
