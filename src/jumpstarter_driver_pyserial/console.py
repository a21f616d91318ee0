"""The interactive serial console of `j serial start-console`: the local terminal in raw mode,
keystrokes to the port, port output to the screen, Ctrl-B pressed three times to leave."""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

#: The escape key (Ctrl-B) and how many presses in a row leave the console, as upstream.
ESCAPE_KEY = b"\x02"
ESCAPE_PRESSES = 3


@dataclass(slots=True)
class EscapeDetector:
    """Finds the exit sequence (`key` pressed `presses` times in a row) in typed input.

    Escape keys are held back while they might start the sequence and sent on (in order) as soon
    as another key shows they did not, so a single Ctrl-B still reaches the device.
    """

    key: bytes = ESCAPE_KEY
    presses: int = ESCAPE_PRESSES
    held: int = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Process typed bytes; returns (bytes to send to the device, whether to exit). Bytes typed
        after the exit sequence are dropped."""
        out = bytearray()
        for byte in data:
            if bytes((byte,)) == self.key:
                self.held += 1
                if self.held == self.presses:
                    self.held = 0
                    return bytes(out), True
                continue
            if self.held:
                out += self.key * self.held
                self.held = 0
            out.append(byte)
        return bytes(out), False


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Put the terminal on `fd` in raw mode for the block; its settings are restored however the
    block ends."""
    import termios
    import tty

    try:
        saved = termios.tcgetattr(fd)
        tty.setraw(fd, termios.TCSANOW)
    except termios.error as exc:
        raise OSError(f"cannot put the terminal in raw mode: {exc}") from None
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


@contextmanager
def terminal_foreground(fd: int) -> Iterator[None]:
    """Make this process the terminal's foreground job for the block.

    Inside `jmp shell`, `j` commands run in the shell process on behalf of the `j` process, which
    is the terminal's foreground job; a background process that changes terminal settings or reads
    the terminal is stopped by the kernel (SIGTTOU/SIGTTIN). The foreground goes back to the `j`
    process afterwards. Nothing changes when this process already is in the foreground.
    """
    try:
        foreground = os.tcgetpgrp(fd)
    except OSError:
        yield  # not our controlling terminal: job control does not apply
        return
    ours = os.getpgrp()
    if foreground == ours:
        yield
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})  # a blocked SIGTTOU is not sent
    try:
        os.tcsetpgrp(fd, ours)
        try:
            yield
        finally:
            os.tcsetpgrp(fd, foreground)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Console:
    """Connects a terminal (`stdin_fd`, `stdout_fd`) to a blocking byte stream until the escape
    sequence is typed or the stream ends."""

    def __init__(self, stream: Any, stdin_fd: int, stdout_fd: int, detector: EscapeDetector | None = None) -> None:
        self.stream = stream
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.detector = detector or EscapeDetector()
        self._wake_r, self._wake_w = os.pipe()
        self._failure: BaseException | None = None
        # once the console has returned, the output thread (which may still be waiting for the
        # stream to close) must not touch descriptors whose numbers could be reused by then
        self._lock = threading.Lock()
        self._finished = False

    def run(self) -> None:
        """Run the console (the caller sets up raw mode); returns when the user leaves or the
        device side ends; raises what broke the output side."""
        output = threading.Thread(target=self._copy_output, daemon=True, name="serial-console-output")
        output.start()
        try:
            self._copy_input()
        finally:
            with self._lock:
                self._finished = True
                os.close(self._wake_r)
                os.close(self._wake_w)
        if self._failure is not None:
            raise self._failure

    def _copy_output(self) -> None:
        try:
            for chunk in self.stream:
                with self._lock:
                    if self._finished:
                        return
                    _write_all(self.stdout_fd, chunk)
        except BaseException as exc:
            self._failure = exc
        finally:
            with self._lock:
                if not self._finished:
                    os.write(self._wake_w, b"x")

    def _copy_input(self) -> None:
        while True:
            ready, _, _ = select.select([self.stdin_fd, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            data = os.read(self.stdin_fd, 4096)
            if not data:
                return
            forward, leave = self.detector.feed(data)
            if forward:
                self.stream.send(forward)
            if leave:
                return


def start_console(stream: Any, stdin: Any = None, stdout: Any = None, stderr: Any = None) -> None:
    """Run an interactive console on the current terminal (sys.stdin/sys.stdout by default)."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    in_fd, out_fd = stdin.fileno(), stdout.fileno()
    if not os.isatty(in_fd):
        raise OSError("start-console needs a terminal on stdin; use `j serial pipe` from scripts")
    with terminal_foreground(in_fd), raw_terminal(in_fd):
        stderr.write("Connected. Press Ctrl-B three times to exit.\r\n")  # raw mode is on from here
        stderr.flush()
        Console(stream, in_fd, out_fd).run()
    stderr.write("\r\nDisconnected.\n")
    stderr.flush()
