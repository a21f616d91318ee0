"""`SSHWrapperClient`: runs the local `ssh` to the device through a TCP port forward; `j ssh`."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jumpstarter_driver_composite.client import CompositeClient

if TYPE_CHECKING:
    import click

#: ssh options that take no value / take a value (OpenSSH 9); anything else starts the command.
_FLAGS = frozenset("-4 -6 -A -a -C -f -G -g -K -k -M -N -n -q -s -T -t -V -v -X -x -Y -y".split())
_WITH_VALUE = frozenset("-B -b -c -D -E -e -F -I -i -J -L -l -m -O -o -P -p -Q -R -S -W -w".split())
#: Exit status reported when the ssh program itself cannot be started.
COMMAND_NOT_FOUND = 127


@dataclass
class SSHCommandRunOptions:
    """How `SSHWrapperClient.run` runs ssh.

    `direct`: connect to the device address itself when the network driver can tell it (else the
    port forward is used); `capture_output`: collect stdout/stderr instead of inheriting them;
    `capture_as_text`: decode captured output as text.
    """

    direct: bool = False
    capture_output: bool = True
    capture_as_text: bool = True


@dataclass
class SSHCommandRunResult:
    """What an ssh run returned: its exit status and captured output (empty when not captured)."""

    return_code: int
    stdout: str | bytes
    stderr: str | bytes


def split_ssh_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split a command line into ssh options and the remote command (everything from the first
    word that is not an ssh option on)."""
    options: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _FLAGS:
            options.append(arg)
        elif arg in _WITH_VALUE and i + 1 < len(args):
            options += [arg, args[i + 1]]
            i += 1
        elif arg.startswith("-") and len(arg) > 2 and arg[:2] in _WITH_VALUE:  # -lroot, -p2222
            options.append(arg)
        else:
            break
        i += 1
    return options, list(args[i:])


def _names_user(options: Sequence[str]) -> bool:
    return any(opt == "-l" or (opt.startswith("-l") and len(opt) > 2) for opt in options) or any(
        opt.lower().startswith("user=") for opt in options[1:]
    )


@contextmanager
def _identity_file(identity: str | None) -> Iterator[str | None]:
    """The private key in a file only we can read, for the duration of the block."""
    if not identity:
        yield None
        return
    fd, path = tempfile.mkstemp(prefix="jmp-ssh-key-")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp files are 0600 already
            f.write(identity if identity.endswith("\n") else identity + "\n")  # OpenSSH needs the newline
        yield path
    finally:
        os.unlink(path)


def _fileno(stream: Any) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


@dataclass(kw_only=True)
class SSHWrapperClient(CompositeClient):
    """Client of an `SSHWrapper`: `run()` runs ssh against the device, `j ssh ARGS...` from the shell.

        result = client.ssh.run(SSHCommandRunOptions(), ["uname", "-a"])
        assert result.return_code == 0

    Streams opened on it go to the `tcp` child, so port-forward adapters work on it too.
    """

    @asynccontextmanager
    async def stream_async(self, method: str = "connect") -> AsyncIterator[Any]:
        """A byte stream to the device's SSH port (through the `tcp` child)."""
        async with self.children["tcp"].stream_async(method) as stream:
            yield stream

    @property
    def command(self) -> str:
        """The configured ssh command line."""
        return self.call("get_ssh_command")

    @property
    def identity(self) -> str | None:
        """The configured private key text, or None."""
        return self.call("get_ssh_identity")

    @property
    def username(self) -> str:
        """The configured default user ("" for ssh's own default)."""
        return self.call("get_default_username")

    def run(self, options: SSHCommandRunOptions, args: Sequence[str]) -> SSHCommandRunResult:
        """Run ssh with `args` (ssh options, then the remote command) against the device."""
        if options.direct:
            address = self._direct_address()
            if address is not None:
                return self._run_ssh(*address, options, args)
            self.logger.info("the network driver has no direct address; using a port forward")
        from jumpstarter_driver_network.adapters import TcpPortforwardAdapter

        with TcpPortforwardAdapter(client=self.children["tcp"]) as (host, port):
            return self._run_ssh(host, port, options, args)

    def _direct_address(self) -> tuple[str, int] | None:
        """(host, port) of the device when the network driver exports `address()`."""
        from urllib.parse import urlparse

        from jumpstarter.errors import MethodNotFoundError

        try:
            parsed = urlparse(str(self.children["tcp"].call("address")))
        except MethodNotFoundError:
            return None
        if parsed.hostname and parsed.port:
            return parsed.hostname, parsed.port
        return None

    def build_command(self, host: str, port: int, args: Sequence[str], identity_file: str | None = None) -> list[str]:
        """The ssh argv for reaching `host`:`port` with the user's `args`."""
        ssh_options, command = split_ssh_args(args)
        argv = shlex.split(self.command)
        if identity_file:
            argv += ["-i", identity_file]
        argv += ["-p", str(port)]
        username = self.username
        if username and not _names_user(ssh_options):
            argv += ["-l", username]
        return [*argv, *ssh_options, host, *command]

    def _run_ssh(self, host: str, port: int, options: SSHCommandRunOptions, args: Sequence[str]) -> SSHCommandRunResult:
        with _identity_file(self.identity) as identity_file:
            argv = self.build_command(host, port, args, identity_file)
            self.logger.debug("running %s", shlex.join(argv))
            try:
                if options.capture_output:
                    done = subprocess.run(argv, capture_output=True, text=options.capture_as_text,
                                          stdin=subprocess.DEVNULL)
                    return SSHCommandRunResult(done.returncode, done.stdout, done.stderr)
                return self._run_attached(argv)
            except FileNotFoundError:
                empty = "" if options.capture_as_text else b""
                return SSHCommandRunResult(COMMAND_NOT_FOUND, empty, f"ssh program {argv[0]!r} not found")

    @staticmethod
    def _run_attached(argv: list[str]) -> SSHCommandRunResult:
        """Run with this command's stdin/stdout/stderr (which inside `jmp shell` are those of the
        `j` process, not of the shell process); streams without a descriptor get copies."""
        streams = (sys.stdin, sys.stdout, sys.stderr)
        fds = [_fileno(s) for s in streams]
        for stream in streams[1:]:
            stream.flush()
        done = subprocess.run(
            argv,
            stdin=fds[0] if fds[0] is not None else subprocess.DEVNULL,
            stdout=fds[1] if fds[1] is not None else subprocess.PIPE,
            stderr=fds[2] if fds[2] is not None else subprocess.PIPE,
        )
        if done.stdout:
            sys.stdout.write(done.stdout.decode(errors="replace"))
        if done.stderr:
            sys.stderr.write(done.stderr.decode(errors="replace"))
        return SSHCommandRunResult(done.returncode, "", "")

    def cli(self) -> click.Command:
        """`j ssh [--direct] [SSH OPTIONS] [COMMAND...]`; exits with ssh's exit status."""
        import click

        @click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
        @click.option("--direct", is_flag=True, help="Connect to the device address directly instead of a port forward")
        @click.argument("args", nargs=-1, type=click.UNPROCESSED)
        def ssh(direct: bool, args: tuple[str, ...]) -> None:
            """Run ssh on the device: `j ssh`, `j ssh -l user`, `j ssh -- uname -a`"""
            result = self.run(SSHCommandRunOptions(direct=direct, capture_output=False), args)
            if result.return_code:
                # SystemExit rather than click's Exit: in non-standalone mode click turns Exit into a
                # return value, which `j` does not look at
                sys.exit(result.return_code)

        return ssh
