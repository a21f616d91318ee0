"""Inside a real `jmp shell` the plugin drives the shell's exporter (JUMPSTARTER_HOST)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = """\
from jumpstarter_testing.pytest import JumpstarterTest


def test_module_level(client, driver, jumpstarter_metadata):
    driver("power").on()
    assert jumpstarter_metadata.name == "exporter"
    assert jumpstarter_metadata.labels == {"jumpstarter.dev/name": "bench"}


class TestUpstreamStyle(JumpstarterTest):
    selector = "board=ignored-inside-a-shell"

    def test_power(self, client):
        client.power.on()
        client.power.off()
"""


def test_pytest_inside_jmp_shell(pytester: pytest.Pytester, exporter_yaml: Path) -> None:
    pytester.makepyfile(test_in_shell=TESTS)
    jmp = str(Path(sys.executable).parent / "jmp")
    result = pytester.run(
        jmp, "shell", "--exporter-config", str(exporter_yaml), "--",
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--junitxml=report.xml", "test_in_shell.py",
        timeout=120,
    )
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines([
        "jumpstarter: the exporter of the surrounding jmp shell (*exporter.sock)",
        "*2 passed*",
    ])
    suite = ET.parse(pytester.path / "report.xml").getroot().find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert properties["jumpstarter_mode"] == "shell"
    assert properties["jumpstarter_exporter"] == "exporter"
