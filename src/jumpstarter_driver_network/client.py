"""`NetworkClient` and `j <name> forward | forward-unix | connect`."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jumpstarter.client import DriverClient

if TYPE_CHECKING:
    import click


@dataclass(kw_only=True)
class NetworkClient(DriverClient):
    """Client of a network driver: `stream()` gives the byte stream; the adapters in
    `jumpstarter_driver_network.adapters` forward local sockets to it."""

    def cli(self) -> click.Group:
        """`forward [--host H] [--port N]`, `forward-unix PATH`, `connect`."""
        import click

        @click.group()
        def base() -> None:
            """Network connection"""

        @base.command()
        @click.option("--host", default="127.0.0.1", show_default=True, help="Local address to listen on")
        @click.option("--port", "-p", type=click.IntRange(0, 65535), default=0,
                      help="Local port to listen on (default: any free port)")
        def forward(host: str, port: int) -> None:
            """Forward a local TCP port to this endpoint until interrupted; prints HOST:PORT"""
            from jumpstarter_driver_network.adapters import TcpPortforwardAdapter

            with TcpPortforwardAdapter(client=self, local_host=host, local_port=port) as (bound_host, bound_port):
                click.echo(f"{bound_host}:{bound_port}")
                click.echo(f"forwarding {bound_host}:{bound_port} to {self.name}; Ctrl-C stops", err=True)
                self._wait_until_interrupted()

        @base.command(name="forward-unix")
        @click.argument("path", type=click.Path(dir_okay=False))
        def forward_unix(path: str) -> None:
            """Forward a local unix socket at PATH to this endpoint until interrupted"""
            from jumpstarter_driver_network.adapters import UnixPortforwardAdapter

            with UnixPortforwardAdapter(client=self, path=path) as bound:
                click.echo(bound)
                click.echo(f"forwarding {bound} to {self.name}; Ctrl-C stops", err=True)
                self._wait_until_interrupted()

        @base.command()
        def connect() -> None:
            """Connect stdin and stdout to this endpoint (like netcat)"""
            self._pipe()

        return base

    def _wait_until_interrupted(self) -> None:
        """Block until Ctrl-C (KeyboardInterrupt: exit status 130) or until this client's
        connection closes. Inside `jmp shell`, `j` commands run in the shell's own process, where
        no Ctrl-C arrives; ending with the connection at least lets the shell exit."""
        closed = threading.Event()
        self.stack.callback(closed.set)
        closed.wait()

    def _pipe(self) -> None:
        """Copy stdin to the stream and the stream to stdout until the endpoint ends its side."""
        stdin: Any = sys.stdin.buffer
        stdout = sys.stdout.buffer
        with self.stream() as stream:

            def feed() -> None:
                while chunk := stdin.read1(65536):
                    stream.send(chunk)
                stream.send_eof()

            threading.Thread(target=feed, daemon=True, name="j-connect-stdin").start()
            for chunk in stream:
                stdout.write(chunk)
                stdout.flush()
