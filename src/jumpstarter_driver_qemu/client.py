"""Clients of the QEMU driver and its disk."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from jumpstarter.client import DriverClient


class QemuClient(DriverClient):
    """The virtual board: `power`, `console`, `storage` and network children, plus `status()`."""

    def status(self) -> dict[str, Any]:
        """Running state, pid, forwarded ports, disk image."""
        return self.call("status")

    def console_tail(self, lines: int = 20) -> str:
        """The last lines the guest printed on its serial console."""
        return str(self.call("console_tail", lines))

    def wait_for_prompt(self, prompt: str = r"[#$] ", timeout: float = 120, progress: bool | None = None) -> float:
        """Wait until the serial console shows `prompt` (a regex), pressing Enter now and then;
        returns the seconds it took. On timeout the error carries the last console lines.
        A progress line is printed on stderr (by default when stderr is a terminal)."""
        import time

        import pexpect

        show = sys.stderr.isatty() if progress is None else progress
        start = time.monotonic()
        with self.console.pexpect() as console:
            while True:
                console.sendline("")
                try:
                    console.expect(prompt, timeout=1.5)
                    break
                except pexpect.TIMEOUT:
                    elapsed = time.monotonic() - start
                    if elapsed > timeout:
                        raise TimeoutError(
                            f"no prompt matching {prompt!r} on the console after {timeout:g}s; last console "
                            f"lines:\n{self.console_tail(15)}"
                        ) from None
                    if show:
                        sys.stderr.write(f"\rbooting... {elapsed:5.1f}s")
                        sys.stderr.flush()
        took = time.monotonic() - start
        if show:
            sys.stderr.write(f"\rshell prompt after {took:.1f}s\n")
        return took

    def cli(self) -> click.Group:
        """`j <qemu> status` plus the children's commands."""
        from jumpstarter.cli.jcommands import command_for

        group = click.Group(help=self.description or "QEMU virtual machine")

        @group.command()
        def status() -> None:
            """Show the VM state."""
            import json

            click.echo(json.dumps(self.status(), indent=2))

        for name, child in self.children.items():
            command = command_for(child, name)
            if command is not None:
                group.add_command(command, name)
        return group


class QemuFlasherClient(DriverClient):
    """Flash or dump the VM's disk image."""

    def flash(self, path: str | Path | bytes, *, compression: str | None = None, progress: bool = False) -> int:
        """Write a local image (path or bytes) to the disk; the VM must be off."""
        source: Any = path if isinstance(path, bytes) else _Progress(Path(path)) if progress else path
        with self.resource(source, compression=compression) as handle:
            return int(self.call("flash", handle))

    def dump(self, path: str | Path) -> int:
        """Copy the disk image to a local file; returns the bytes written."""
        written = 0
        with open(path, "wb") as out:
            for chunk in self.streamingcall("dump"):
                out.write(chunk)
                written += len(chunk)
        return written

    def cli(self) -> click.Group:
        """`j storage flash FILE [--compression zstd]` and `j storage dump FILE`."""
        group = click.Group(help=self.description or "virtual disk")

        @group.command()
        @click.argument("file", type=click.Path(exists=True, dir_okay=False))
        @click.option("--compression", type=click.Choice(["gzip", "xz", "bz2", "zstd"]), default=None)
        def flash(file: str, compression: str | None) -> None:
            """Flash FILE to the disk (VM powered off)."""
            size = self.flash(file, compression=compression, progress=sys.stderr.isatty())
            click.echo(f"flashed {size} bytes", err=True)

        @group.command()
        @click.argument("file", type=click.Path(dir_okay=False))
        def dump(file: str) -> None:
            """Copy the disk to FILE."""
            click.echo(f"dumped {self.dump(file)} bytes", err=True)

        return group


class _Progress:
    """A file object that prints a progress line on stderr as it is read."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")
        self._total = max(path.stat().st_size, 1)
        self._done = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._done += len(chunk)
        sys.stderr.write(f"\rflashing: {100 * self._done // self._total:3d}% ({self._done >> 20} MiB)")
        if not chunk:
            sys.stderr.write("\n")
            self._file.close()
        sys.stderr.flush()
        return chunk
