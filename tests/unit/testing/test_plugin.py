"""The pytest plugin, exercised by running pytest on small test suites (`pytester`)."""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

# imported here so that in-process pytest runs do not import them afresh: pytester drops the modules
# a run imported, and a re-imported `yaml` no longer matches its C extension's node classes
import jumpstarter.exporter.loader
import jumpstarter.testing.session
import jumpstarter_driver_network.driver
import jumpstarter_driver_power.driver

pytest_plugins = ["pytester"]
KEEP_LOADED = (yaml, jumpstarter.exporter.loader, jumpstarter.testing.session, jumpstarter_driver_network.driver,
               jumpstarter_driver_power.driver)

DEVICE_TESTS = """\
import subprocess, sys
from pathlib import Path

from jumpstarter.utils.env import env_with_metadata

SEEN = []


def test_fixtures(client, driver, jumpstarter_client, jumpstarter_metadata):
    client.power.on()
    assert driver("power") is client.power is jumpstarter_client.power
    assert jumpstarter_metadata.name == "exporter"
    assert jumpstarter_metadata.labels == {"jumpstarter.dev/name": "bench"}
    SEEN.append(client)


def test_session_reuses_the_connection_and_env_reaches_it(client):
    assert SEEN == [client]
    with env_with_metadata() as (other, meta):     # what helper code written for `jmp shell` does
        other.power.off()
        assert meta.name == "exporter"
    j = str(Path(sys.executable).parent / "j")
    result = subprocess.run([j, "power", "on"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_unknown_driver_names_the_known_ones(driver):
    try:
        driver("lamp")
    except LookupError as exc:
        assert str(exc) == "no driver named 'lamp': the exporter has echo, power"
    else:
        raise AssertionError("no error")


def test_without_the_device():
    pass
"""


def test_local_exporter_config(pytester: pytest.Pytester, exporter_yaml: Path) -> None:
    pytester.makepyfile(test_device=DEVICE_TESTS)
    result = pytester.runpytest("--jmp-exporter-config", "exporter.yaml")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["jumpstarter: local exporter config */exporter.yaml (from --jmp-exporter-config)"])
    assert "JUMPSTARTER_HOST" not in os.environ  # the session's environment is gone with it


def test_no_target_skips_device_tests_with_instructions(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_device=DEVICE_TESTS)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines([
        "SKIPPED [[]1[]] test_device.py:9: no Jumpstarter target configured: "
        "run pytest inside `jmp shell`*--jmp-exporter-config FILE*"
    ])


def test_ini_key_is_relative_to_the_ini_file(pytester: pytest.Pytester, exporter_yaml: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (pytester.path / "boards").mkdir()
    exporter_yaml.rename(pytester.path / "boards" / "exporter.yaml")
    pytester.makeini("[pytest]\njmp_exporter_config = boards/exporter.yaml\n")
    suite = pytester.mkdir("suite")
    (suite / "test_ini_device.py").write_text(DEVICE_TESTS)
    monkeypatch.chdir(suite)
    pytester.runpytest().assert_outcomes(passed=4)


def test_pyproject_and_environment_variables(pytester: pytest.Pytester, exporter_yaml: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_device=DEVICE_TESTS)
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\njmp_direct = "nowhere:1"\n')
    monkeypatch.setenv("JMP_EXPORTER_CONFIG", str(exporter_yaml))  # the environment beats the ini file
    pytester.runpytest().assert_outcomes(passed=4)
    monkeypatch.delenv("JMP_EXPORTER_CONFIG")
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(["*jumpstarter: cannot use direct-mode exporter nowhere:1 (from ini key jmp_direct)*"])


def test_conflicting_options_are_an_error(pytester: pytest.Pytester, exporter_yaml: Path) -> None:
    pytester.makepyfile(test_device=DEVICE_TESTS)
    result = pytester.runpytest("--jmp-exporter-config", "exporter.yaml", "--jmp-direct", "lab:1")
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines([
        "jumpstarter: conflicting Jumpstarter targets: --jmp-exporter-config, --jmp-direct; give only one kind*"
    ])


FAILING = """\
import logging

def test_passes(client):
    client.power.on()

def test_fails(client):
    client.power.off()
    with client.echo.stream() as console:
        console.send(b"U-Boot 2024.01\\nStarting kernel ...\\n")
        console.receive(timeout=5)
    assert False, "the board did not boot"
"""


def test_failure_report_shows_exporter_log_and_console(pytester: pytest.Pytester, exporter_yaml: Path) -> None:
    pytester.makepyfile(test_boot=FAILING)
    pytester.makeini("[pytest]\njmp_console = echo\n")
    # in a subprocess: an in-process run would keep the failed test's open stream alive until this
    # process exits, which then complains about the event loop it belonged to
    result = pytester.runpytest_subprocess("--jmp-exporter-config", "exporter.yaml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*Captured log call (jumpstarter exporter exporter)*",
        "* INFO * exporter.driver: power off",
        "*Captured log call (jumpstarter console echo)*",
        "U-Boot 2024.01",
        "Starting kernel ...",
    ])
    # only the failing test's own lines: "power on" came from the passing test
    report = result.stdout.str()
    assert "exporter.driver: power on" not in report


def test_console_driver_that_does_not_exist(pytester: pytest.Pytester, exporter_yaml: Path) -> None:
    pytester.makepyfile(test_boot=FAILING)
    result = pytester.runpytest_subprocess("--jmp-exporter-config", "exporter.yaml", "--jmp-console", "serial")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["(jmp_console: no driver named 'serial': the exporter has echo, power)"])


def test_junit_xml_properties(pytester: pytest.Pytester, exporter_yaml: Path) -> None:
    pytester.makepyfile(test_device=DEVICE_TESTS)
    pytester.runpytest("--jmp-exporter-config", "exporter.yaml", "--junitxml=report.xml").assert_outcomes(passed=4)
    suite = ET.parse(pytester.path / "report.xml").getroot().find("testsuite")
    assert suite is not None

    def properties(node: ET.Element) -> dict[str, str]:
        return {p.get("name", ""): p.get("value", "") for p in node.findall("properties/property")}

    expected = {"jumpstarter_mode": "local", "jumpstarter_exporter": "exporter",
                "jumpstarter_labels": "jumpstarter.dev/name=bench"}
    assert properties(suite) == expected
    cases = {case.get("name"): properties(case) for case in suite.findall("testcase")}
    assert cases["test_fixtures"] == expected
    assert cases["test_without_the_device"] == {}


CLASS_TESTS = """\
from jumpstarter_testing.pytest import JumpstarterTest


class TestBoard(JumpstarterTest):
    selector = "board=rpi4"

    def test_on(self, client):
        client.power.on()

    def test_same_client(self, client):
        assert type(self).__dict__.get("_jumpstarter_session") is None  # the session's target, no lease
        client.power.off()
"""


def test_jumpstarter_test_class(pytester: pytest.Pytester, exporter_yaml: Path, tmp_path: Path) -> None:
    pytester.makepyfile(test_board=CLASS_TESTS)
    pytester.runpytest("--jmp-exporter-config", "exporter.yaml").assert_outcomes(passed=2)
    # no target and no client config: skipped, saying how to get a device
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*no Jumpstarter target configured*lease a device by TestBoard.selector*"])
    # with a client config the class leases by its selector (upstream's fallback, which never ran there)
    jmp = str(Path(sys.executable).parent / "jmp")
    pytester.run(jmp, "config", "client", "create", "lab", "-e", "127.0.0.1:1", "-t", "tok", "--nointeractive")
    result = pytester.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        "jumpstarter: cannot use a device leased by the current client with selector board=rpi4 "
        "(from TestBoard.selector): cannot reach the controller at 127.0.0.1:1*"
    ])


def test_distributed_mode_with_an_unreachable_controller(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_device=DEVICE_TESTS)
    result = pytester.runpytest("--jmp-client", "lab", "--jmp-selector", "board=rpi4")
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(["*no client config named 'lab'*"])
    jmp = str(Path(sys.executable).parent / "jmp")
    pytester.run(jmp, "config", "client", "create", "lab", "-e", "127.0.0.1:1", "-t", "tok", "--nointeractive")
    result = pytester.runpytest("--jmp-client", "lab", "--jmp-selector", "board=rpi4", "--jmp-selector", "site=x")
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines([
        "jumpstarter: cannot use a device leased by client lab with selector board=rpi4,site=x "
        "(from --jmp-client and --jmp-selector): cannot reach the controller at 127.0.0.1:1*"
    ])
    assert "Traceback" not in result.stdout.str()


def test_xdist_workers_cannot_share_one_device(pytester: pytest.Pytester, exporter_yaml: Path) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_device=DEVICE_TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "--jmp-exporter-config", "exporter.yaml")
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines([
        "jumpstarter: pytest-xdist runs 2 workers, but local exporter config */exporter.yaml "
        "(from --jmp-exporter-config) is one device*use distributed mode*"
    ])


@contextmanager
def direct_exporter(config: Path, passphrase: str) -> Iterator[int]:
    """A direct-mode exporter (plain TCP, with a passphrase) served from a background thread."""
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.exporter.exporter import TcpListener
    from jumpstarter.exporter.loader import load_exporter

    built = load_exporter(config)
    listener = TcpListener(address="127.0.0.1:0", identity=None, passphrase=passphrase)
    with start_blocking_portal("asyncio") as portal, portal.wrap_async_context_manager(built.serving(tcp=listener)):
        assert built.tcp_port is not None
        yield built.tcp_port


def test_direct_mode(pytester: pytest.Pytester, exporter_yaml: Path) -> None:
    pytester.makepyfile(test_device=DEVICE_TESTS.replace('meta.name == "exporter"', 'meta.name == "bench"')
                        .replace('jumpstarter_metadata.name == "exporter"', 'jumpstarter_metadata.name == "bench"'))
    with direct_exporter(exporter_yaml, "s3cret") as port:
        result = pytester.runpytest("--jmp-direct", f"127.0.0.1:{port}", "--jmp-insecure", "--jmp-passphrase", "s3cret")
        result.assert_outcomes(passed=4)
        wrong = pytester.runpytest("--jmp-direct", f"127.0.0.1:{port}", "--jmp-insecure", "--jmp-passphrase", "nope")
        wrong.assert_outcomes(passed=1, errors=3)
        wrong.stdout.fnmatch_lines([f"jumpstarter: cannot use direct-mode exporter 127.0.0.1:{port} *passphrase*"])


HOOKED = """\
apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
export:
  power:
    type: MockPower
hooks:
  beforeLease:
    script: |
      echo "board prepared by the hook"
      exit ${HOOK_EXIT:-0}
    onFailure: endLease
"""


def test_hooks_run_with_jmp_run_hooks(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    (pytester.path / "hooked.yaml").write_text(HOOKED)
    pytester.makepyfile(test_hooked="def test_fails(client):\n    assert False\n")
    result = pytester.runpytest("--jmp-exporter-config", "hooked.yaml", "--jmp-run-hooks")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Captured log call (jumpstarter exporter hooked)*",
                                 "* exporter.beforeLease: board prepared by the hook"])
    monkeypatch.setenv("HOOK_EXIT", "3")
    result = pytester.runpytest("--jmp-exporter-config", "hooked.yaml", "--jmp-run-hooks")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["jumpstarter: cannot use local exporter config *: exporter hooked: "
                                 "beforeLease hook failed with exit code 3"])
