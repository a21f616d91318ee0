"""Log capture ring buffer and console tap."""

from __future__ import annotations

import logging
import threading
import time

import anyio

from jumpstarter.common.utils import serve
from jumpstarter.testing.capture import ConsoleTap, LogCapture
from jumpstarter_driver_network.driver import EchoNetwork


def test_lines_since_a_mark() -> None:
    capture = LogCapture(limit=3)
    logger = logging.getLogger("test.capture")
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    try:
        logger.info("one")
        mark = capture.mark()
        for word in ("two", "three", "four", "five"):
            logger.info(word)
    finally:
        logger.removeHandler(capture)
    lines = capture.since(mark)
    assert [line.rsplit(": ", 1)[1] for line in lines] == ["three", "four", "five"]  # the oldest dropped
    assert "INFO" in lines[0] and "test.capture" in lines[0]


def test_settle_waits_for_late_records() -> None:
    capture = LogCapture()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "late", None, None)
    timer = threading.Timer(0.05, capture.handle, (record,))
    capture.handle(record)
    timer.start()
    started = time.monotonic()
    capture.settle(quiet=0.15, limit=2.0)
    assert 0.15 <= time.monotonic() - started < 1.5
    assert len(capture.since(0)) == 2
    started = time.monotonic()
    capture.settle(quiet=0.01, limit=0.05)
    assert time.monotonic() - started < 0.5


def test_console_tap_records_what_streams_receive() -> None:
    tap = ConsoleTap(limit=64)
    with serve(EchoNetwork()) as client:
        tap.attach(client)
        with client.stream() as stream:
            stream.send(b"\x1b[1mboot\x1b[0m ok\r\nlogin: ")
            received = b""
            while not received.endswith(b"login: "):
                received += stream.receive(timeout=5)

        async def echo_async() -> None:
            async with client.stream_async() as stream:
                await stream.send(b"\nsecond")
                assert await stream.receive() == b"\nsecond"

        client.portal.call(echo_async)
    assert tap.tail(2) == "login: \nsecond"
    assert tap.tail(10) == "boot ok\nlogin: \nsecond"
    tap.record(b"x" * 100)
    assert tap.tail(1) == "x" * 64


def test_console_tap_keeps_anyio_end_of_stream() -> None:
    tap = ConsoleTap()
    with serve(EchoNetwork()) as client:
        tap.attach(client)
        with client.stream() as stream:
            stream.send(b"bye")
            assert stream.receive(timeout=5) == b"bye"
            stream.send_eof()
            try:
                while True:
                    stream.receive(timeout=5)
            except anyio.EndOfStream:
                pass
    assert tap.tail(1) == "bye"
