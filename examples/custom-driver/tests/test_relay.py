"""Tests of the relay driver through a real exporter session: `serve()` needs no hardware."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from jumpstarter_driver_relay.client import RelayClient
from jumpstarter_driver_relay.driver import MockRelayBoard

from jumpstarter.common.utils import serve


@pytest.fixture
def relay() -> Iterator[Any]:
    with serve(MockRelayBoard(channels=4)) as client:
        yield client


def test_close_and_open(relay: RelayClient) -> None:
    assert isinstance(relay, RelayClient)
    relay.close(2)
    assert relay.states() == [False, True, False, False]
    relay.open(2)
    assert relay.states() == [False] * 4


def test_pulse_leaves_the_relay_open(relay: RelayClient) -> None:
    relay.pulse(1, seconds=0.01)
    assert relay.states()[0] is False


def test_driver_errors_reach_the_client_with_their_type(relay: RelayClient) -> None:
    with pytest.raises(ValueError, match="channel 9 does not exist: this board has channels 1 to 4"):
        relay.close(9)


def test_watch_streams_changes(relay: RelayClient) -> None:
    changes: list[dict[str, Any]] = []

    def watch() -> None:
        for change in relay.watch(2):
            changes.append(change)

    watcher = threading.Thread(target=watch)
    watcher.start()
    deadline = time.monotonic() + 10
    while watcher.is_alive() and time.monotonic() < deadline:  # until the watch has seen two changes
        relay.close(3)
        relay.open(3)
    watcher.join(timeout=10)
    assert [c["channel"] for c in changes] == [3, 3]
    assert changes[0]["closed"] != changes[1]["closed"]


def test_j_commands(relay: RelayClient) -> None:
    runner = CliRunner()
    assert runner.invoke(relay.cli(), ["close", "4"]).exit_code == 0
    result = runner.invoke(relay.cli(), ["status"])
    assert result.output == "1: open\n2: open\n3: open\n4: closed\n"
    result = runner.invoke(relay.cli(), ["pulse", "1", "--seconds", "0"])
    assert result.exit_code == 0, result.output


def test_driver_logs_reach_the_client(relay: RelayClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="exporter"), relay.log_stream():
        relay.close(1)
        for _ in range(100):
            if "relay 1 closed" in caplog.text:
                break
            relay.states()  # a round trip gives the log stream time to deliver
    assert "relay 1 closed" in caplog.text
