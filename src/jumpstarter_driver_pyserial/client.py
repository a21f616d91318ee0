"""`PySerialClient`: the serial port as a blocking stream, a pexpect session, and `j serial`."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from jumpstarter.client import BlockingStream, DriverClient

if TYPE_CHECKING:
    import click
    from pexpect.fdpexpect import fdspawn


@dataclass(kw_only=True)
class PySerialClient(DriverClient):
    """Client of a `PySerial` driver.

        with client.serial.pexpect() as console:
            console.expect("login:")
            console.sendline("root")

    `stream()` gives a context-managed `BlockingStream` (`send`, `receive`); `open_stream()` one that
    stays open until `close()`.
    """

    _open_streams: ExitStack = field(default_factory=ExitStack, init=False, repr=False)

    def open_stream(self) -> BlockingStream:
        """Open a stream to the port that stays open until `close()`."""
        return self._open_streams.enter_context(self.stream())

    def open(self) -> BlockingStream:
        """Same as `open_stream()` (upstream name)."""
        return self.open_stream()

    def close(self) -> None:
        """Close the streams opened with `open_stream()`."""
        self._open_streams.close()

    @contextmanager
    def pexpect(self, **spawn_options: Any) -> Iterator[fdspawn]:
        """A pexpect spawn object on the console for scripted flows (`expect`, `sendline`, ...);
        `spawn_options` go to `pexpect.fdpexpect.fdspawn` (`timeout`, `encoding`, `logfile`, ...)."""
        from jumpstarter_driver_network.adapters import PexpectAdapter

        with PexpectAdapter(client=self, **spawn_options) as spawn:
            yield spawn

    def cli(self) -> click.Group:
        """`j <name> start-console` and `j <name> pipe`."""
        import click

        @click.group()
        def base() -> None:
            """Serial port"""

        @base.command(name="start-console")
        def start_console() -> None:
            """Interactive console on this terminal; press Ctrl-B three times to exit"""
            from jumpstarter_driver_pyserial.console import start_console

            with self.stream() as stream:
                start_console(stream)

        @base.command()
        @click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
                      help="Write serial output to FILE instead of stdout")
        @click.option("-a", "--append", is_flag=True, help="Append to the --output file instead of overwriting it")
        @click.option("-i", "--input", "force_input", is_flag=True,
                      help="Send stdin to the port even when it is a terminal")
        @click.option("--no-input", is_flag=True, help="Do not send stdin to the port, even when piped")
        @click.option("--no-output", is_flag=True,
                      help="Only send stdin to the port, then exit at end of input (fire and forget)")
        def pipe(output: str | None, append: bool, force_input: bool, no_input: bool, no_output: bool) -> None:
            """Copy the port's output to stdout (or a file) and piped stdin to the port, until
            Ctrl-C or the port closes"""
            if force_input and no_input:
                raise click.UsageError("--input and --no-input exclude each other")
            if no_output and (output or append):
                raise click.UsageError("--no-output cannot be combined with --output or --append")
            if append and not output:
                raise click.UsageError("--append needs --output")
            send_input = force_input or (not no_input and not sys.stdin.isatty())
            if no_output and not send_input:
                raise click.UsageError("--no-output needs input: pipe something into stdin or pass --input")
            if output:
                with open(output, "ab" if append else "wb") as sink:
                    self._pipe(sink, send_input, no_output)
            else:
                self._pipe(sys.stdout.buffer, send_input, no_output)

        return base

    def _pipe(self, sink: BinaryIO | None, send_input: bool, no_output: bool) -> None:
        """Copy stdin to the port (when `send_input`) and the port to `sink` (unless `no_output`)."""
        stdin: Any = sys.stdin.buffer
        with self.stream() as stream:
            finished_input = threading.Event()

            def feed() -> None:
                try:
                    while chunk := stdin.read1(65536):
                        stream.send(chunk)
                finally:
                    finished_input.set()

            if send_input:
                threading.Thread(target=feed, daemon=True, name="serial-pipe-stdin").start()
            if no_output:
                finished_input.wait()
                return
            assert sink is not None
            for chunk in stream:
                sink.write(chunk)
                sink.flush()
