"""The shell side of fast `j`: run `j` command lines inside the `jmp shell` process.

Each `j` process sends its argv and its stdio file descriptors; a worker thread runs the command
with those descriptors as its stdin/stdout/stderr (per-thread, through `ThreadStdio`), using the
client tree the shell already holds, and replies with the exit code.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_local = threading.local()


class ThreadStdio:
    """A stand-in for sys.stdin/stdout/stderr that resolves to the calling thread's own stream."""

    def __init__(self, name: str, default: Any) -> None:
        self._name = name
        self._default = default

    def _target(self) -> Any:
        return getattr(_local, self._name, None) or self._default

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._target(), attr)

    def __iter__(self) -> Iterator[str]:
        return iter(self._target())

    def write(self, data: str) -> int:
        return self._target().write(data)

    def flush(self) -> None:
        self._target().flush()


def _install_stdio() -> None:
    for name in ("stdin", "stdout", "stderr"):
        current = getattr(sys, name)
        if not isinstance(current, ThreadStdio):
            setattr(sys, name, ThreadStdio(name, current))


def _serve_one(conn: socket.socket, root: Any) -> None:
    from jumpstarter.cli.jcommands import build_cli
    from jumpstarter.cli.jslow import invoke

    fds: list[int] = []
    try:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        while not data.endswith(b"\n"):
            more = conn.recv(1 << 16)
            if not more:
                return
            data += more
        request = json.loads(data)
        streams: dict[str, io.TextIOWrapper] = {
            "stdin": io.TextIOWrapper(io.BufferedReader(io.FileIO(fds[0], "rb", closefd=False))),
            "stdout": io.TextIOWrapper(io.BufferedWriter(io.FileIO(fds[1], "wb", closefd=False)), line_buffering=True),
            "stderr": io.TextIOWrapper(io.BufferedWriter(io.FileIO(fds[2], "wb", closefd=False)), line_buffering=True),
        }
        for name, stream in streams.items():
            setattr(_local, name, stream)
        done = threading.Event()
        _watch_for_hangup(conn, threading.get_ident(), done)
        try:
            code = invoke(build_cli(root), list(request.get("argv", [])))
        except KeyboardInterrupt:
            code = 130
        finally:
            done.set()
            for name, stream in streams.items():
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
                setattr(_local, name, None)
        conn.sendall(json.dumps({"exit_code": code}).encode() + b"\n")
    except (OSError, ValueError):
        pass
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


def _watch_for_hangup(conn: socket.socket, worker: int, done: threading.Event) -> None:
    """When the `j` process goes away (Ctrl-C, killed) before its command finished, interrupt the
    command running for it here (KeyboardInterrupt in its thread), as a terminal would."""

    def watch() -> None:
        try:
            conn.recv(1)
        except OSError:
            pass
        if not done.is_set():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker), ctypes.py_object(KeyboardInterrupt))

    threading.Thread(target=watch, daemon=True, name="j-hangup-watch").start()


@contextmanager
def command_server(root: Any, directory: str) -> Iterator[str]:
    """Serve `j` requests with the client tree `root`; yields the command socket path."""
    path = os.path.join(directory, "j.sock")
    _install_stdio()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_serve_one, args=(conn, root), daemon=True).start()

    acceptor = threading.Thread(target=accept_loop, daemon=True, name="j-command-server")
    acceptor.start()
    try:
        yield path
    finally:
        stop.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        listener.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
