"""`Shell` through a real session running real /bin/sh commands; `ShellClient` and `j shell ...`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jumpstarter.common.utils import serve
from jumpstarter_driver_composite.driver import Composite
from jumpstarter_driver_shell.client import ShellClient, ShellResult
from jumpstarter_driver_shell.driver import Shell
from tests.unit.drivers.conftest import drivers_from_yaml, run_j

DEADLINE = 10.0

METHODS: dict[str, Any] = {
    "echo": 'echo "$@"',
    "argv": 'printf "%s|" "$0" "$@"',
    "greet": 'echo "$GREETING $1"',
    "fail": "echo out; echo err >&2; exit 3",
    "where": "pwd",
    "described": {"command": "echo hi", "description": "Say hi"},
    "default_command": {"description": "upstream's default command"},
    "binary": "printf 'caf\\303\\251 \\377\\n'",
    "big": "head -c 3000000 /dev/zero | tr '\\0' x",
}


@pytest.fixture(scope="module")
def shell_client() -> Iterator[ShellClient]:
    with serve(Shell(methods=METHODS, shell=["sh", "-c"], env={"GREETING": "hello"})) as client:
        yield client


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.01)


def wait_for_file(path: Path) -> str:
    deadline = time.monotonic() + DEADLINE
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.01)
    return path.read_text().strip()


def test_arguments_are_positional_parameters_never_shell_text(shell_client: ShellClient, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    result = shell_client.argv("two words", f"$(touch {marker})", "; rm -rf /", "*")
    assert result == ShellResult(f"argv|two words|$(touch {marker})|; rm -rf /|*|", "", 0)
    assert not marker.exists()


def test_result_unpacks_like_upstream(shell_client: ShellClient) -> None:
    stdout, stderr, returncode = shell_client.echo("hello", 42)
    assert (stdout, stderr, returncode) == ("hello 42\n", "", 0)
    assert shell_client.fail() == ShellResult("out\n", "err\n", 3)


def test_environment_from_config_and_from_the_client(shell_client: ShellClient) -> None:
    assert shell_client.greet("world").stdout == "hello world\n"
    assert shell_client.greet("world", GREETING="bonjour").stdout == "bonjour world\n"


@pytest.mark.parametrize("name", ["PATH", "LD_PRELOAD", "BASH_FUNC_x%%", "LD_AUDIT"])
def test_client_may_not_set_dangerous_variables(shell_client: ShellClient, name: str) -> None:
    with pytest.raises(ValueError, match=r"may not be set|invalid environment variable name"):
        shell_client.execute("greet", "x", **{name: "/tmp/evil"})


def test_only_configured_methods_run(shell_client: ShellClient) -> None:
    with pytest.raises(AttributeError, match="'rm' is not configured"):
        shell_client.rm("-rf", "/")
    with pytest.raises(ValueError, match="unknown shell method 'rm'"):  # asking the driver directly
        list(shell_client.streamingcall("call_method", "rm", {}, "-rf", "/"))
    assert set(shell_client.shell_methods) == set(METHODS)


def test_mapping_form_description_and_upstream_default_command(shell_client: ShellClient) -> None:
    assert shell_client.methods_description["described"] == "Say hi"
    assert shell_client.described.__doc__ == "Say hi"
    assert shell_client.default_command() == ShellResult("Hello\n", "", 0)


def test_output_is_decoded_leniently_and_large_output_is_complete(shell_client: ShellClient) -> None:
    assert shell_client.binary().stdout == "café \ufffd\n"
    assert shell_client.big().stdout == "x" * 3_000_000


def test_cwd(tmp_path: Path) -> None:
    with serve(Shell(methods={"where": "pwd"}, cwd=str(tmp_path))) as client:
        assert client.where().stdout == f"{tmp_path}\n"


def test_output_streams_while_the_command_runs(tmp_path: Path) -> None:
    go = tmp_path / "go"
    shell = Shell(methods={"wait": 'echo ready; while [ ! -e "$1" ]; do sleep 0.01; done; echo done'})
    with serve(shell) as client:
        pieces = client.iter_output("wait", str(go))
        assert next(pieces).stdout == "ready\n"  # arrives while the command is still waiting
        go.touch()
        rest = list(pieces)
    assert "".join(p.stdout for p in rest) == "done\n"
    assert rest[-1].returncode == 0


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    shell = Shell(methods={"hang": {"command": 'sleep 60 & echo "$$ $!" > "$1"; wait', "timeout": 0.5},
                           "ok": "true"}, shell=["sh", "-c"])
    with serve(shell) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"'hang' timed out after 0\.5 s"):
            client.hang(str(pids))
        assert time.monotonic() - started < 5
        for pid in map(int, wait_for_file(pids).split()):
            wait_gone(pid)
        assert client.ok().returncode == 0  # the session is fine afterwards


def test_abandoned_command_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    shell = Shell(methods={"forever": 'echo $$ > "$1"; while true; do echo tick; sleep 0.01; done', "ok": "true"})
    with serve(shell) as client:
        pieces = client.iter_output("forever", str(pid_file))
        assert "tick" in next(pieces).stdout
        pieces.close()  # the client stops listening
        wait_gone(int(wait_for_file(pid_file)))
        assert client.ok().returncode == 0


@pytest.mark.parametrize(
    ("config", "error", "needle"),
    [
        ({"methods": {}}, TypeError, "methods"),
        ({"methods": {"a b": "true"}}, ValueError, "methods.a b"),
        ({"methods": {"x": {"command": "true", "timeot": 3}}}, ValueError, "methods.x: unknown keys timeot"),
        ({"methods": {"x": {"command": "true", "timeout": -1}}}, ValueError, "methods.x.timeout"),
        ({"methods": {"x": ""}}, ValueError, "methods.x"),
        ({"methods": {"x": 5}}, TypeError, "methods.x"),
        ({"methods": {"x": "true"}, "shell": ["no-such-shell-here", "-c"]}, ValueError, "shell"),
        ({"methods": {"x": "true"}, "shell": "bash -c"}, TypeError, "shell"),
        ({"methods": {"x": "true"}, "cwd": "/no/such/dir"}, ValueError, "cwd"),
        ({"methods": {"x": "true"}, "timeout": 0}, ValueError, "timeout"),
        ({"methods": {"x": "true"}, "env": {"A": 1}}, TypeError, "env"),
    ],
)
def test_config_errors_name_the_field(config: dict[str, Any], error: type[Exception], needle: str) -> None:
    with pytest.raises(error, match=needle.replace(".", r"\.")):
        Shell(**config)


def test_upstream_config_and_j(capsys: pytest.CaptureFixture[str]) -> None:
    root = drivers_from_yaml(
        "  shell:\n"
        "    type: jumpstarter_driver_shell.driver.Shell\n"
        "    config:\n"
        "      methods:\n"
        "        echo: 'printf \"[%s]\" \"$@\"'\n"
        "        greet: 'echo \"$GREETING, $1\"'\n"
        "        fail: 'echo broken >&2; exit 7'\n"
        "        deploy: {command: 'echo deploying', description: Deploy the app}\n"
        "        deploy-all: 'echo everything'\n"
        "        _helper: 'echo private'\n"
    )
    with serve(Composite(children={"board": root})) as client:
        assert run_j(client, "board", "shell", "echo", "-n", "two words") == 0  # options pass through
        assert capsys.readouterr().out == "[-n][two words]"
        assert run_j(client, "board", "shell", "greet", "-e", "GREETING=Hi", "there") == 0
        assert capsys.readouterr().out == "Hi, there\n"
        assert run_j(client, "board", "shell", "fail") == 7
        assert capsys.readouterr().err == "broken\n"
        assert run_j(client, "board", "shell", "greet", "-e", "NOEQUALS") == 2
        assert "is not KEY=VALUE" in capsys.readouterr().err
        assert run_j(client, "board", "shell", "--help") == 0
        listing = capsys.readouterr().out
        assert "Deploy the app" in listing and "Execute the echo shell method" in listing
        assert "_helper" not in listing
        assert run_j(client, "board", "shell", "deploy-all") == 0
        assert capsys.readouterr().out == "everything\n"
        assert client.board.shell.execute("_helper").stdout == "private\n"  # hidden from j, not from Python
