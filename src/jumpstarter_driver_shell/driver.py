"""`Shell`: named commands configured on the exporter, run with client-supplied arguments.

Only the configured commands can run. Client arguments reach a command as positional parameters
(`$1`, `$2`, ...; `$0` is the method name), never as shell text, and client environment variables
are checked against a deny-list of variables that would change what runs. Output streams back as
it is produced; each method has a timeout after which its whole process group is killed.

The wire shape matches upstream: `get_methods()` and the streaming `call_method(method, env,
*args)` yielding `(stdout_chunk, stderr_chunk, returncode_or_None)`.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio

from jumpstarter.driver import Driver, export

#: Environment variables a client may not set: they change which programs or libraries run.
BLOCKED_ENV_VARS = frozenset({"PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONSTARTUP",
                              "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "IFS", "HOME", "KUBECONFIG"})
BLOCKED_ENV_PREFIXES = ("LD_", "BASH_FUNC_", "DYLD_")
#: Keys a method may have in the mapping form of `methods`.
METHOD_KEYS = frozenset({"command", "description", "timeout"})
#: Command of a method configured as a mapping without `command` (upstream's default).
DEFAULT_COMMAND = "echo Hello"
#: Seconds a timed-out or abandoned command gets between SIGTERM and SIGKILL.
KILL_GRACE = 2.0
READ_SIZE = 65536


@dataclass(slots=True)
class _Method:
    command: str
    timeout: float


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"Shell config {where}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _check_env(env: Any, where: str) -> dict[str, str]:
    if not isinstance(env, dict):
        raise TypeError(f"{where}: expected a mapping of variable names to strings, got {env!r}")
    for key, value in env.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"{where}: invalid environment variable name {key!r}")
        if not isinstance(value, str):
            raise TypeError(f"{where}: value of {key} must be a string, got {value!r}")
    return env


@dataclass(kw_only=True)
class Shell(Driver):
    """Runs the shell commands named in `methods` (`{name: command}` or `{name: {command,
    description, timeout}}`) with `shell` (default `bash -c`) in `cwd`, with `env` added."""

    driver_type: ClassVar[str] = "shell"

    methods: dict[str, Any]
    shell: list[str] = field(default_factory=lambda: ["bash", "-c"])
    #: Default per-method timeout in seconds.
    timeout: float = 300
    cwd: str | None = None
    #: Environment variables set for every command (on top of the exporter's environment).
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.timeout = _seconds(self.timeout, "timeout")
        if not isinstance(self.shell, list) or not self.shell or not all(isinstance(a, str) for a in self.shell):
            raise TypeError(f"Shell config shell: expected a list of strings such as [bash, -c], got {self.shell!r}")
        if shutil.which(self.shell[0]) is None:
            raise ValueError(f"Shell config shell: program {self.shell[0]!r} not found")
        if self.cwd is not None and not os.path.isdir(self.cwd):
            raise ValueError(f"Shell config cwd: {self.cwd!r} is not a directory")
        _check_env(self.env, "Shell config env")
        self._methods = self._parse_methods()

    @classmethod
    def client(cls) -> str:
        """Dotted path of `ShellClient`."""
        return "jumpstarter_driver_shell.client.ShellClient"

    def _parse_methods(self) -> dict[str, _Method]:
        if not isinstance(self.methods, dict) or not self.methods:
            raise TypeError(
                f"Shell config methods: expected a mapping of method names to commands, got {self.methods!r}"
            )
        parsed = {}
        for name, spec in self.methods.items():
            where = f"Shell config methods.{name}"
            if not isinstance(name, str) or not name or any(c.isspace() or c == "/" for c in name):
                raise ValueError(f"{where}: a method name is one word (no spaces or slashes), got {name!r}")
            if isinstance(spec, str):
                command, timeout = spec, self.timeout
            elif isinstance(spec, dict):
                unknown = set(spec) - METHOD_KEYS
                if unknown:
                    raise ValueError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}; "
                                     f"accepted: {', '.join(sorted(METHOD_KEYS))}")
                command = spec.get("command", DEFAULT_COMMAND)
                timeout = _seconds(spec["timeout"], f"methods.{name}.timeout") if "timeout" in spec else self.timeout
                if "description" in spec:
                    self.methods_description.setdefault(name, str(spec["description"]))
            else:
                raise TypeError(f"{where}: expected a command string or a mapping, got {spec!r}")
            if not isinstance(command, str) or not command.strip():
                raise ValueError(f"{where}: the command must be a non-empty string")
            parsed[name] = _Method(command, timeout)
        return parsed

    @export
    async def get_methods(self) -> list[str]:
        """Names of the configured methods."""
        return list(self._methods)

    @export
    async def call_method(self, method: str, env: Any, *args: Any) -> AsyncIterator[tuple[str, str, int | None]]:
        """Run a configured method; yields (stdout, stderr, None) as output arrives, then
        ("", "", returncode). Raises TimeoutError when the method's timeout passes."""
        spec = self._methods.get(method)
        if spec is None:
            raise ValueError(f"unknown shell method {method!r}; configured: {', '.join(self._methods)}")
        environment = self._environment(env or {})
        argv = [*self.shell, spec.command, method, *map(_argument, args)]
        self.logger.info("running %s with %d argument(s)", method, len(args))
        async for item in _run(argv, environment, self.cwd, spec.timeout, method):
            yield item

    def _environment(self, env: Any) -> dict[str, str]:
        _check_env(env, "env")
        for key in env:
            if key in BLOCKED_ENV_VARS or key.startswith(BLOCKED_ENV_PREFIXES):
                raise ValueError(f"env: {key} may not be set by a client")
        return {**os.environ, **self.env, **env}


def _argument(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"shell method arguments must be strings or numbers, got {value!r}")


async def _run(
    argv: list[str], env: dict[str, str], cwd: str | None, time_limit: float, method: str
) -> AsyncIterator[tuple[str, str, int | None]]:
    """Run `argv` in its own process group and stream its output.

    The generator may be abandoned at any `yield` (the client went away) and closed later from
    another task, so no task group or cancel scope spans a `yield`: the pipe readers are plain
    asyncio tasks (the exporter's loop is always asyncio, grpc.aio needs it) feeding a queue, and
    `finally` kills whatever still runs."""
    process = await anyio.open_process(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=cwd, start_new_session=True,
    )
    send, receive = anyio.create_memory_object_stream[tuple[int, str] | None](64)
    pipes = (process.stdout, process.stderr)
    readers = [asyncio.ensure_future(_pump(index, pipe, send)) for index, pipe in enumerate(pipes)]
    deadline = anyio.current_time() + time_limit
    finished = False

    async def before_deadline(func: Any) -> Any:
        with anyio.move_on_after(deadline - anyio.current_time()):
            return await func()
        raise TimeoutError(f"shell method {method!r} timed out after {time_limit:g} s and was killed")

    try:
        open_pipes = 2
        while open_pipes:
            item = await before_deadline(receive.receive)
            if item is None:
                open_pipes -= 1
                continue
            index, text = item
            yield (text, "", None) if index == 0 else ("", text, None)
        returncode = await before_deadline(process.wait)
        finished = True
        yield "", "", returncode
    finally:
        for reader in readers:
            reader.cancel()
        with anyio.CancelScope(shield=True):
            if not finished:
                await _kill_group(process)
            await process.aclose()
        send.close()
        receive.close()


async def _pump(index: int, stream: Any, send: Any) -> None:
    """Decode one pipe into `send` as (index, text); None once the pipe is at its end."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        while True:
            try:
                chunk = await stream.receive(READ_SIZE)
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                break
            text = decoder.decode(chunk)
            if text:
                await send.send((index, text))
        tail = decoder.decode(b"", final=True)
        if tail:
            await send.send((index, tail))
        await send.send(None)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass


async def _kill_group(process: Any) -> None:
    """Stop a command that timed out or was abandoned, with every process it started: SIGTERM to
    its process group, SIGKILL after a grace period."""
    _signal_group(process.pid, signal.SIGTERM)
    with anyio.move_on_after(KILL_GRACE):
        await process.wait()
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
