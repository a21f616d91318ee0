"""`ShellClient`: every configured shell method as a Python method and a `j` subcommand."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from jumpstarter.client import DriverClient

if TYPE_CHECKING:
    import click


class ShellResult(NamedTuple):
    """What a shell method printed and how it exited."""

    stdout: str
    stderr: str
    returncode: int


class ShellOutput(NamedTuple):
    """One piece of a running method's output; `returncode` is set on the last piece only."""

    stdout: str
    stderr: str
    returncode: int | None


@dataclass(kw_only=True)
class ShellClient(DriverClient):
    """Client of a `Shell` driver.

    Each configured method is an attribute: `client.ls("-l", "/tmp", LANG="C")` runs it with
    arguments `$1`, `$2` and environment variable `LANG`, and returns a `ShellResult`
    (stdout, stderr, returncode). A method whose name collides with a client attribute (`name`,
    `call`, ...) is reachable as `client.execute("name", ...)`; `iter_output` streams output as
    the command produces it.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self._method_names: list[str] | None = None

    @property
    def shell_methods(self) -> list[str]:
        """Names of the methods configured on the exporter."""
        if self._method_names is None:
            self._method_names = list(self.call("get_methods"))
        return self._method_names

    def iter_output(self, method: str, *args: str, **env: str) -> Iterator[ShellOutput]:
        """Run `method`, yielding output pieces as they arrive; the last piece carries the return code."""
        self._check(method)
        for stdout, stderr, returncode in self.streamingcall("call_method", method, env, *args):
            yield ShellOutput(stdout, stderr, returncode)

    def execute(self, method: str, *args: str, **env: str) -> ShellResult:
        """Run `method` to completion; returns (stdout, stderr, returncode)."""
        out: list[str] = []
        err: list[str] = []
        returncode = -1
        for piece in self.iter_output(method, *args, **env):
            out.append(piece.stdout)
            err.append(piece.stderr)
            if piece.returncode is not None:
                returncode = piece.returncode
        return ShellResult("".join(out), "".join(err), returncode)

    def _check(self, method: str) -> None:
        if method not in self.shell_methods:
            configured = ", ".join(self.shell_methods)
            raise AttributeError(f"shell method {method!r} is not configured; configured: {configured}")

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: children first, then configured methods
        children = self.__dict__.get("children")
        if children is not None and name in children:
            return children[name]
        if name.startswith("_") or "uuid" not in self.__dict__:  # probing (copy, pickle) or half-built
            raise AttributeError(name)
        self._check(name)

        def run(*args: str, **env: str) -> ShellResult:
            return self.execute(name, *args, **env)

        run.__name__ = run.__qualname__ = name
        run.__doc__ = self.methods_description.get(name) or f"Execute the {name} shell method"
        return run

    def cli(self) -> click.Group:
        """One subcommand per configured method (except those starting with `_`):
        `j <name> <method> [-e KEY=VALUE]... [ARGS]...`, exiting with the command's return code."""
        import click

        @click.group()
        def base() -> None:
            """Shell command executor"""

        for method in self.shell_methods:
            if not method.startswith("_"):  # upstream's convention: private helpers stay out of `j`
                base.add_command(self._command(method, click))
        return base

    def _command(self, method: str, click: Any) -> click.Command:
        def callback(env: tuple[str, ...], args: tuple[str, ...]) -> None:
            variables = {}
            for item in env:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--env")
                variables[key] = value
            returncode = self._print_output(method, args, variables)
            if returncode:
                # SystemExit rather than click's Exit: non-standalone click returns Exit's code from
                # main(), which `j` (jumpstarter.cli.jslow.invoke) does not look at
                sys.exit(returncode)

        return click.Command(
            method,
            callback=callback,
            params=[
                click.Option(["--env", "-e"], multiple=True, metavar="KEY=VALUE",
                             help="Environment variable for the command (repeatable)"),
                click.Argument(["args"], nargs=-1, type=click.UNPROCESSED),
            ],
            help=self.methods_description.get(method) or f"Execute the {method} shell method",
            context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
        )

    def _print_output(self, method: str, args: tuple[str, ...], env: dict[str, str]) -> int:
        """Copy a method's output to our stdout/stderr as it arrives; returns its return code."""
        returncode = 0
        for piece in self.iter_output(method, *args, **env):
            if piece.stdout:
                _write(sys.stdout, piece.stdout)
            if piece.stderr:
                _write(sys.stderr, piece.stderr)
            if piece.returncode is not None:
                returncode = piece.returncode
        return returncode


def _write(stream: Any, text: str) -> None:
    stream.write(text)
    stream.flush()
