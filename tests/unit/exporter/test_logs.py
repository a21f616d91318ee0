"""Driver log records reach the client's own logging while `log_stream()` is active."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from google.protobuf import empty_pb2

from jumpstarter.client import DriverClient
from jumpstarter.common.utils import serve, serve_async
from jumpstarter.driver import Driver, export
from jumpstarter.exporter.logging import LogBroadcaster, LogSource, source_of

DEADLINE = 10.0
POLL = 0.01
#: How long one attempt waits for its record before logging it again.
RETRY = 0.1


@dataclass(kw_only=True)
class Chatty(Driver):
    """Logs what it is told to."""

    driver_type = "power"

    @export
    def say(self, level: str, message: str) -> None:
        self.logger.log(logging.getLevelName(level), "%s", message)

    @export
    async def say_async(self, message: str) -> None:
        self.logger.info("%s", message)


@pytest.fixture(scope="module")
def client() -> Iterator[DriverClient]:
    with serve(Chatty()) as root:
        yield root


def forwarded(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "exporter.driver" and r.getMessage() == message]


def say_until_forwarded(say: Callable[[], Any], caplog: pytest.LogCaptureFixture, message: str) -> None:
    """Log on the exporter until the client has re-logged the record, or fail at the deadline.

    The subscription starts asynchronously, so a record logged right after `log_stream()` is
    entered may predate it; saying it again until it arrives waits on the condition itself."""
    deadline = time.monotonic() + DEADLINE
    quiet = threading.Event()
    while not forwarded(caplog, message):
        if time.monotonic() > deadline:
            pytest.fail(f"{message!r} was not forwarded within {DEADLINE} s")
        say()
        end = time.monotonic() + RETRY
        while not forwarded(caplog, message) and time.monotonic() < end:
            quiet.wait(POLL)


def test_driver_log_reaches_the_client(client: DriverClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with client.log_stream():
        say_until_forwarded(lambda: client.call("say", "WARNING", "fuse blown"), caplog, "fuse blown")
    record = forwarded(caplog, "fuse blown")[0]
    assert record.levelno == logging.WARNING


def test_level_is_kept(client: DriverClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with client.log_stream():
        say_until_forwarded(lambda: client.call("say", "INFO", "ready"), caplog, "ready")
        client.call("say", "ERROR", "overcurrent")
        say_until_forwarded(lambda: None, caplog, "overcurrent")
    assert forwarded(caplog, "ready")[0].levelno == logging.INFO
    assert forwarded(caplog, "overcurrent")[0].levelno == logging.ERROR


def test_nothing_is_forwarded_without_log_stream(
    client: DriverClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client.call("say", "INFO", "unheard")
    with client.log_stream():  # a later subscription proves the exporter is alive and forwarding
        say_until_forwarded(lambda: client.call("say", "INFO", "heard"), caplog, "heard")
    assert forwarded(caplog, "unheard") == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("driver.")].count("unheard") == 1


@pytest.mark.anyio
async def test_log_stream_async(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with serve_async(Chatty()) as root, root.log_stream_async():
        with anyio.fail_after(DEADLINE):
            while not forwarded(caplog, "async hello"):
                await root.call_async("say_async", "async hello")
                with anyio.move_on_after(RETRY):
                    while not forwarded(caplog, "async hello"):  # noqa: ASYNC110 - caplog has no event to await
                        await anyio.sleep(POLL)


@pytest.mark.anyio
async def test_log_stream_wire_fields() -> None:
    """What an upstream client sees: severity, message, source DRIVER, driver type, logger name."""
    driver = Chatty()
    async with serve_async(driver) as root:
        export, _ = root.connection.aio_stubs()
        call = export.LogStream(empty_pb2.Empty())
        try:
            with anyio.fail_after(DEADLINE):
                async with anyio.create_task_group() as tg:

                    async def keep_saying() -> None:
                        while True:
                            await root.call_async("say", "WARNING", "on the wire")
                            await anyio.sleep(RETRY)

                    tg.start_soon(keep_saying)
                    entry = await call.read()
                    while entry.message != "on the wire":
                        entry = await call.read()
                    tg.cancel_scope.cancel()
        finally:
            call.cancel()
    assert entry.uuid == str(driver.uuid)
    assert entry.severity == "WARNING"
    assert entry.message == "on the wire"
    assert entry.source == LogSource.DRIVER
    assert entry.driver_type == "power"
    assert entry.structured_fields["logger"] == "driver.Chatty"
    assert entry.HasField("timestamp")


def make_record(name: str, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, "msg", None, None)
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize(
    ("record", "wanted"),
    [
        (make_record("driver.Power", jmp_uuid="ours"), True),
        (make_record("driver.Power", jmp_uuid="another-sessions-driver"), False),
        (make_record("jumpstarter_driver_power.driver"), True),
        (make_record("jumpstarter.exporter.session"), True),
        (make_record("urllib3.connectionpool"), False),
        (make_record("anything", jmp_source=LogSource.BEFORE_LEASE_HOOK), True),
    ],
)
def test_which_records_a_session_forwards(record: logging.LogRecord, wanted: bool) -> None:
    assert LogBroadcaster(["ours"]).wants(record) is wanted


@pytest.mark.parametrize(
    ("record", "source"),
    [
        (make_record("driver.Power"), LogSource.DRIVER),
        (make_record("x", jmp_uuid="u"), LogSource.DRIVER),
        (make_record("jumpstarter.exporter.session"), LogSource.SYSTEM),
        (make_record("x", jmp_source=LogSource.AFTER_LEASE_HOOK), LogSource.AFTER_LEASE_HOOK),
    ],
)
def test_source_of(record: logging.LogRecord, source: LogSource) -> None:
    assert source_of(record) is source
