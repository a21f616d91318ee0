"""`PySerial`: a serial port (device path or any pyserial URL) exported as a byte stream.

Every `connect` stream opens the port afresh (as upstream does), reads it from a dedicated thread
and closes it when the stream ends. pyserial is imported lazily: install the `serial` extra.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
from anyio.abc import ByteStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from jumpstarter.driver import Driver, exportstream
from jumpstarter.errors import ConfigurationError

#: Longest a blocking read waits before the reader thread checks whether it should stop (for URL
#: handlers without `cancel_read`, such as socket:// and rfc2217://).
READ_POLL = 0.1
#: Largest chunk handed over per read.
READ_SIZE = 1 << 16
#: Chunks read ahead of the consumer before the reader thread waits (backpressure).
BUFFERED_CHUNKS = 64

_PARITIES = {"N", "E", "O", "M", "S"}
_BYTESIZES = {5, 6, 7, 8}
_STOPBITS = {1, 1.5, 2}


def _scheme(url: str) -> str | None:
    """The URL scheme of a pyserial URL (`loop`, `socket`, ...), None for a device path."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else None


@dataclass(kw_only=True)
class PySerial(Driver):
    """A serial port: `url` is a device path (`/dev/ttyUSB0`) or a pyserial URL (`socket://host:port`,
    `rfc2217://host:port`, `loop://`); `connect` is a byte stream to it.

    `check_present` checks that a device path exists when the exporter starts (turn it off for ports
    that appear later, e.g. a USB gadget of the DUT); `cps` throttles sending to that many characters
    per second, for consoles that drop fast input; `disable_hupcl` keeps DTR/RTS from toggling on
    close, which resets some MCUs.
    """

    url: str
    baudrate: int = 115200
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    xonxoff: bool = False
    rtscts: bool = False
    check_present: bool = True
    cps: float | None = None
    disable_hupcl: bool = False

    driver_type: ClassVar[str] = "serial"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_config()

    def _check_config(self) -> None:
        def bad(field: str, message: str) -> ConfigurationError:
            return ConfigurationError(f"PySerial config {field}: {message}")

        if not isinstance(self.url, str) or not self.url:
            raise bad("url", f"expected a device path or pyserial URL, got {self.url!r}")
        scheme = _scheme(self.url)
        if scheme is not None:
            if importlib.util.find_spec("serial") is None:
                raise bad("url", "pyserial is not installed (pip install 'jumpstarter[serial]')")
            if importlib.util.find_spec(f"serial.urlhandler.protocol_{scheme}") is None:
                raise bad("url", f"{self.url!r} uses {scheme}://, which pyserial does not know "
                          "(known: loop://, socket://, rfc2217://, spy://, alt://, hwgrep://)")
        elif self.check_present and not os.path.exists(self.url):
            raise bad("url", f"serial port {self.url!r} does not exist "
                      "(set check_present: false for a port that appears later)")
        if isinstance(self.baudrate, bool) or not isinstance(self.baudrate, int) or self.baudrate <= 0:
            raise bad("baudrate", f"expected a positive integer, got {self.baudrate!r}")
        if self.bytesize not in _BYTESIZES:
            raise bad("bytesize", f"expected one of 5, 6, 7, 8, got {self.bytesize!r}")
        if not isinstance(self.parity, str) or self.parity.upper() not in _PARITIES:
            raise bad("parity", f"expected one of N, E, O, M, S, got {self.parity!r}")
        if self.stopbits not in _STOPBITS:
            raise bad("stopbits", f"expected 1, 1.5 or 2, got {self.stopbits!r}")
        if self.cps is not None and (isinstance(self.cps, bool) or not isinstance(self.cps, (int, float))
                                     or self.cps <= 0):
            raise bad("cps", f"expected a positive number of characters per second, got {self.cps!r}")

    @classmethod
    def client(cls) -> str:
        """Dotted path of `PySerialClient`."""
        return "jumpstarter_driver_pyserial.client.PySerialClient"

    def _open(self) -> Any:
        """Open the port (blocking)."""
        import serial

        try:
            port = serial.serial_for_url(
                self.url,
                baudrate=self.baudrate,
                bytesize=self.bytesize,
                parity=self.parity.upper(),
                stopbits=self.stopbits,
                xonxoff=self.xonxoff,
                rtscts=self.rtscts,
                timeout=READ_POLL,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ConnectionError(f"cannot open serial port {self.url}: {exc}") from None
        if self.disable_hupcl:
            _clear_hupcl(port)
        return port

    @exportstream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[SerialStream]:
        """A byte stream to the serial port."""
        self.logger.debug("opening serial port %s", self.url)
        port = await anyio.to_thread.run_sync(self._open)
        stream = SerialStream(port, self.url, self.cps)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(stream.run_reader)
                try:
                    yield stream
                finally:
                    await stream.stop_reader()
        finally:
            await anyio.to_thread.run_sync(port.close)
            self.logger.debug("closed serial port %s", self.url)


def _clear_hupcl(port: Any) -> None:
    """Keep the port's modem lines as they are when it is closed (POSIX ports only)."""
    fd = getattr(port, "fd", None)
    if fd is None:
        return
    import termios

    attrs = termios.tcgetattr(fd)
    attrs[2] &= ~termios.HUPCL
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class SerialStream(ByteStream):
    """The exporter's end of one serial connection.

    A reader thread moves what the port receives into a bounded buffer, so bytes are never lost to
    a cancelled `receive()`; sends are written from worker threads, throttled when `cps` is set.
    """

    def __init__(self, port: Any, url: str, cps: float | None) -> None:
        self._port = port
        self._url = url
        self._cps = cps
        self._send_chunks: MemoryObjectSendStream[bytes]
        self._chunks: MemoryObjectReceiveStream[bytes]
        self._send_chunks, self._chunks = anyio.create_memory_object_stream[bytes](BUFFERED_CHUNKS)
        self._leftover = b""
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._write_lock = anyio.Lock()

    # ---- reading -------------------------------------------------------------------------
    async def run_reader(self) -> None:
        """Read the port until stopped (runs the blocking loop in its own thread)."""
        try:
            await anyio.to_thread.run_sync(self._read_loop, limiter=anyio.CapacityLimiter(1))
        finally:
            await self._send_chunks.aclose()

    def _read_loop(self) -> None:
        port = self._port
        while not self._stopping.is_set():
            try:
                waiting = port.in_waiting
                data = port.read(min(max(waiting, 1), READ_SIZE))
            except Exception as exc:  # device unplugged, socket closed, ...
                if not self._stopping.is_set():
                    self._error = exc
                return
            if not data:
                continue
            try:
                anyio.from_thread.run(self._send_chunks.send, data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, RuntimeError):
                return  # nobody reads any more

    async def stop_reader(self) -> None:
        """Stop the reader thread (it notices within READ_POLL seconds, at once where the URL
        handler can cancel a read)."""
        self._stopping.set()
        cancel = getattr(self._port, "cancel_read", None)
        if cancel is not None:
            try:
                cancel()
            except Exception:
                pass
        await self._chunks.aclose()

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        """Next bytes from the port; raises `anyio.EndOfStream` once the port is closed, or a
        `ConnectionError` when it failed (a USB adapter unplugged, a socket reset)."""
        if not self._leftover:
            try:
                self._leftover = await self._chunks.receive()
            except anyio.EndOfStream:
                if self._error is not None:
                    raise ConnectionError(f"serial port {self._url}: {self._error}") from None
                raise
        data, self._leftover = self._leftover[:max_bytes], self._leftover[max_bytes:]
        return data

    # ---- writing -------------------------------------------------------------------------
    async def send(self, item: bytes) -> None:
        """Write bytes to the port (one character at a time, paced, when `cps` is set)."""
        async with self._write_lock:
            if self._cps is None:
                await anyio.to_thread.run_sync(self._port.write, bytes(item))
                return
            for i in range(len(item)):
                await anyio.to_thread.run_sync(self._port.write, item[i : i + 1])
                await anyio.sleep(1 / self._cps)

    async def send_eof(self) -> None:
        """Serial lines have no half-close: the port stays open for reading."""

    async def aclose(self) -> None:
        """Stop reading; the driver closes the port when the stream's context ends."""
        await self.stop_reader()
