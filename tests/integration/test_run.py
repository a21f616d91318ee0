"""`jmp run --unix-socket`: driven by `j` (slow path) and by the Python client; stopping; socket clashes."""

from __future__ import annotations

import importlib
import socket

import pytest

from tests.integration.conftest import HERE, Cli, assert_clean_failure


def test_j_slow_path_against_jmp_run(cli: Cli) -> None:
    config = cli.exporter_config()
    with cli.exporter(config, cli.socket()) as running:
        host = str(running.socket)
        assert cli.j("lamp", "on", "--level", "30", host=host).stdout == "on at 30%\n"
        assert cli.j("lamp", "status", host=host).stdout == "30\n"
        assert cli.j("lamp", "blink", "2", host=host).stdout == "blink 1\nblink 2\n"
        assert cli.j("lamp", "rename", "desk", "--suffix", "-left", host=host).stdout == "desk-left\n"

        failed = cli.j("lamp", "on", "--level", "500", host=host)
        assert_clean_failure(failed, "above the maximum of 100")

        listing = cli.j("lamp", "--help", host=host)
        assert listing.returncode == 0
        for method in ("on", "off", "status", "blink", "rename"):
            assert method in listing.stdout
        assert "Switch on at `level` percent." in listing.stdout  # help from the docstring


def test_python_client_against_jmp_run(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.client import client_from_path

    # the module the exporter imports, under the same name, so the driver's own error type comes back
    monkeypatch.syspath_prepend(str(HERE))
    drivers_for_tests = importlib.import_module("drivers_for_tests")

    config = cli.exporter_config()
    with cli.exporter(config, cli.socket()) as running:
        with start_blocking_portal("asyncio") as portal, client_from_path(str(running.socket), portal) as root:
            lamp = root.children["lamp"]
            assert lamp.call("on", 55) == "on at 55%"
            assert lamp.call("status") == 55
            assert list(lamp.streamingcall("blink", 3)) == ["blink 1", "blink 2", "blink 3"]
            with pytest.raises(drivers_for_tests.LampBroken, match="above the maximum"):
                lamp.call("on", 101)
            assert lamp.call("off") == "off"


def test_sigterm_stops_cleanly(cli: Cli) -> None:
    config = cli.exporter_config()
    with cli.exporter(config, cli.socket()) as running:
        assert cli.j("lamp", "on", host=str(running.socket)).returncode == 0
        assert running.terminate() == 0
        assert not running.socket.exists()
        assert cli.marker().read_text() == "closed\n"  # the driver's close() ran
        assert "Traceback" not in running.stderr


def test_socket_taken_by_a_running_exporter(cli: Cli) -> None:
    config = cli.exporter_config()
    with cli.exporter(config, cli.socket()) as running:
        second = cli.jmp("run", "--exporter-config", str(config), "--unix-socket", str(running.socket))
        assert_clean_failure(second, "already taken", str(running.socket))
        # the first exporter is unharmed
        assert cli.j("lamp", "status", host=str(running.socket)).stdout == "0\n"


def test_socket_path_is_a_regular_file(cli: Cli) -> None:
    path = cli.socket()
    path.write_text("not a socket")
    result = cli.jmp("run", "--exporter-config", str(cli.exporter_config()), "--unix-socket", str(path))
    assert_clean_failure(result, "already taken")
    assert path.read_text() == "not a socket"


def test_stale_socket_is_replaced(cli: Cli) -> None:
    path = cli.socket()
    with socket.socket(socket.AF_UNIX) as left_behind:  # what a SIGKILLed exporter leaves
        left_behind.bind(str(path))
    assert path.is_socket()
    with cli.exporter(cli.exporter_config(), path) as running:
        assert cli.j("lamp", "status", host=str(running.socket)).stdout == "0\n"


def test_run_by_alias_and_missing_alias(cli: Cli) -> None:
    directory = cli.config_home / "exporters"
    directory.mkdir(parents=True)
    cli.exporter_config().rename(directory / "bench.yaml")
    result = cli.jmp("run", "--exporter", "nope", "--unix-socket", str(cli.socket()))
    assert_clean_failure(result, "'nope'", str(directory), str(cli.system_dir / "exporters"), "bench")
    unselected = cli.jmp("run", "--unix-socket", str(cli.socket()))
    assert_clean_failure(unselected, "no exporter selected", "--exporter ALIAS (configured: bench)",
                         "jmp config exporter create")
