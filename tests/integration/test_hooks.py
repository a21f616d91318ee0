"""Lease hooks through `jmp shell --run-hooks` and `jmp run --run-hooks`."""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import pytest

from tests.integration.conftest import Cli, assert_clean_failure


def hooks(before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `hooks:` mapping of an exporter config."""
    found: dict[str, Any] = {}
    if before is not None:
        found["beforeLease"] = before
    if after is not None:
        found["afterLease"] = after
    return found


def test_hook_environment_output_motd_and_order(cli: Cli) -> None:
    order = cli.tmp / "order"
    before = f"""\
echo "before lease=$LEASE_NAME client=$CLIENT_NAME host=$JUMPSTARTER_HOST"
j lamp on --level 42
echo "mind the fuse" >> "$JMP_MOTD_FILE"
echo before >> {order}
"""
    after = f"""\
echo "after level=$(j lamp status)"
echo after >> {order}
"""
    config = cli.exporter_config(motd="Welcome to the bench", hooks=hooks({"script": before}, {"script": after}))
    result = cli.jmp("shell", "--run-hooks", "--exporter-config", str(config), "--",
                     "sh", "-c", f"echo command >> {order}; j lamp status")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\n"  # the hook drove the same driver instance the command sees
    assert re.search(r"^\[beforeLease\] before lease=\S+ client=\S+ host=/\S+$", result.stderr, re.M), result.stderr
    assert "[beforeLease] on at 42%" in result.stderr
    assert "Welcome to the bench\nmind the fuse" in result.stderr  # the motd, with the hook's addition
    assert "[afterLease] after level=42" in result.stderr
    assert order.read_text().split() == ["before", "command", "after"]


def test_python_hook_files_by_extension_and_exec(cli: Cli) -> None:
    (cli.tmp / "before.py").write_text(
        "import os\n"
        "from anyio.from_thread import start_blocking_portal\n"
        "from jumpstarter.client.client import client_from_path\n"
        "host = os.environ['JUMPSTARTER_HOST']\n"
        "with start_blocking_portal('asyncio') as portal, client_from_path(host, portal, unsafe=True) as root:\n"
        "    print('python hook:', root.children['lamp'].call('on', 77))\n"
    )
    # no .py extension: only `exec` makes this run as Python
    (cli.tmp / "after-hook").write_text("import sys\nprint('after hook ran by', sys.implementation.name)\n")
    config = cli.exporter_config(hooks=hooks(
        {"script": "before.py", "onFailure": "endLease"},
        {"script": "after-hook", "exec": sys.executable, "onFailure": "endLease"},
    ))
    result = cli.jmp("shell", "--run-hooks", "--exporter-config", str(config), "--", "j", "lamp", "status")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "77\n"
    assert "[beforeLease] python hook: on at 77%" in result.stderr
    assert "[afterLease] after hook ran by cpython" in result.stderr


def test_hook_ignoring_sigterm_is_killed_after_timeout(cli: Cli) -> None:
    stubborn = "trap '' TERM; echo waiting; sleep 30; echo never"
    config = cli.exporter_config(hooks=hooks({"script": stubborn, "timeout": 1, "onFailure": "warn"}))
    started = time.monotonic()
    result = cli.jmp("shell", "--run-hooks", "--exporter-config", str(config), "--", "echo", "ran", timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ran\n"
    assert "[beforeLease] waiting" in result.stderr
    assert "timed out after 1s" in result.stderr
    assert "never" not in result.stderr
    assert elapsed < 15  # 1 s timeout + the SIGTERM→SIGKILL grace, not the hook's 30 s


@pytest.mark.parametrize("mode", ["warn", "endLease", "exit"])
def test_failing_before_lease_in_shell(cli: Cli, mode: str) -> None:
    ran = cli.tmp / "command-ran"
    config = cli.exporter_config(hooks=hooks({"script": "echo checking; exit 3", "onFailure": mode}))
    result = cli.jmp("shell", "--run-hooks", "--exporter-config", str(config), "--", "touch", str(ran))
    assert "beforeLease hook failed with exit code 3" in result.stderr
    assert "Traceback" not in result.stderr
    if mode == "warn":
        assert result.returncode == 0, result.stderr
        assert ran.exists()
    else:
        assert result.returncode != 0
        assert not ran.exists()
        assert "Error: beforeLease hook failed with exit code 3" in result.stderr


def test_jmp_run_exits_1_when_before_lease_fails_with_on_failure_exit(cli: Cli) -> None:
    config = cli.exporter_config(hooks=hooks({"script": "exit 4", "onFailure": "exit"}))
    socket = cli.socket()
    result = cli.jmp("run", "--run-hooks", "--exporter-config", str(config), "--unix-socket", str(socket))
    assert_clean_failure(result, "beforeLease hook failed with exit code 4")
    assert result.returncode == 1
    assert not socket.exists()
    assert cli.marker().exists()  # drivers were closed on the way out


def test_jmp_run_hooks_around_serving(cli: Cli) -> None:
    after_ran = cli.tmp / "after-ran"
    config = cli.exporter_config(hooks=hooks(
        {"script": "j lamp on --level 12", "onFailure": "exit"},
        {"script": f"j lamp status > {after_ran}"},
    ))
    with cli.exporter(config, cli.socket(), "--run-hooks") as running:
        assert cli.j("lamp", "status", host=str(running.socket)).stdout == "12\n"
        assert not after_ran.exists()
        assert running.terminate() == 0
    assert after_ran.read_text() == "12\n"  # afterLease ran at shutdown, drivers still usable
