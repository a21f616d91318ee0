"""Every kind of broken exporter config ends `jmp shell` / `jmp run` with a located one-line
message and a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Cli, assert_clean_failure

HEADER = "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\n"

#: id -> (config body after the header, strings stderr must contain; `{path}` is the config file)
CASES: dict[str, tuple[str, list[str]]] = {
    "yaml-syntax": (
        "export:\n  lamp:\n    type: drivers_for_tests.Lamp\n    config: {max_level: 3\n",
        ["{path}:7", "invalid YAML"],
    ),
    "unknown-field": (
        "export:\n  lamp:\n    type: drivers_for_tests.Lamp\n    confg: {}\n",
        ["{path}:6", "unknown field 'confg'"],
    ),
    "unknown-top-level-field": (
        "exports:\n  lamp:\n    type: drivers_for_tests.Lamp\n",
        ["{path}:3", "unknown field 'exports'", "export"],
    ),
    "unknown-driver-type": (
        "export:\n  lamp:\n    type: NoSuchDriver\n",
        ["{path}:5", "unknown driver type 'NoSuchDriver'", "installed drivers:", "Composite"],
    ),
    "missing-driver-module": (
        "export:\n  lamp:\n    type: no_such_package.Lamp\n",
        ["{path}:5", "unknown driver type 'no_such_package.Lamp'", "no module named 'no_such_package'"],
    ),
    "bad-constructor-argument": (
        "export:\n  lamp:\n    type: drivers_for_tests.Lamp\n    config:\n      wattage: 40\n",
        ["{path}:7", "does not accept wattage", "closed_marker", "max_level"],
    ),
    "constructor-rejects-value": (
        "export:\n  lamp:\n    type: drivers_for_tests.Lamp\n    config:\n      max_level: -1\n",
        ["{path}:4", "creating driver drivers_for_tests.Lamp failed", "max_level must be positive"],
    ),
    "dangling-ref": (
        "export:\n  lamp:\n    type: drivers_for_tests.Lamp\n  light:\n    ref: lamp.bulb\n",
        ["{path}:7", "ref 'lamp.bulb' points nowhere", "lamp"],
    ),
    "ref-cycle": (
        "export:\n  a:\n    ref: b\n  b:\n    ref: a\n",
        ["ref cycle", "a -> b -> a"],
    ),
    "wrong-kind": (
        "",
        ["kind: expected 'ExporterConfig', found 'ClientConfig'"],
    ),
}


@pytest.mark.parametrize("command", ["shell", "run"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_exporter_config(cli: Cli, case: str, command: str) -> None:
    body, needles = CASES[case]
    path = cli.tmp / "broken.yaml"
    header = HEADER.replace("ExporterConfig", "ClientConfig") if case == "wrong-kind" else HEADER
    path.write_text(header + body)
    if command == "shell":
        result = cli.jmp("shell", "--exporter-config", str(path), "--", "true")
    else:
        result = cli.jmp("run", "--exporter-config", str(path), "--unix-socket", str(cli.socket()))
    assert_clean_failure(result, *(needle.format(path=path) for needle in needles))
    assert not cli.socket().exists()


def test_missing_config_file(cli: Cli) -> None:
    path = cli.tmp / "absent.yaml"
    result = cli.jmp("shell", "--exporter-config", str(path), "--", "true")
    assert_clean_failure(result, str(path), "no such config file")


def test_bad_alias_config_names_the_file(cli: Cli) -> None:
    directory = cli.system_dir / "exporters"
    directory.mkdir(parents=True)
    (directory / "bench.yaml").write_text(HEADER + "export:\n  lamp:\n    type: NoSuchDriver\n")
    result = cli.jmp("shell", "--exporter", "bench", "--", "true")
    assert_clean_failure(result, f"{directory / 'bench.yaml'}:5", "NoSuchDriver")
