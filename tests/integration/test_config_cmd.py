"""`jmp config exporter|client ...` round trips, and the small commands (driver list, version,
completion, help)."""

from __future__ import annotations

import json
import os
import pty
import stat
import subprocess
from pathlib import Path

import yaml

from tests.integration.conftest import JMP, LAMP, Cli, assert_clean_failure

HEADER = "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\n"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """stdout of a command that must have succeeded."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def test_exporter_config_round_trip(cli: Cli) -> None:
    path = Path(ok(cli.jmp("config", "exporter", "create", "bench", "--namespace", "lab", "--name", "bench-1",
                           "--endpoint", "grpc.example.com:443", "--token", "s3cret", "-k", "--nointeractive",
                           "-o", "path")).strip())
    assert path == cli.config_home / "exporters" / "bench.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a token
    written = yaml.safe_load(path.read_text())
    assert written["kind"] == "ExporterConfig"
    assert written["metadata"] == {"name": "bench-1", "namespace": "lab"}
    assert written["endpoint"] == "grpc.example.com:443"
    assert written["token"] == "s3cret"
    assert written["tls"] == {"insecure": True}
    ok(cli.jmp("conf", "e", "c", "rack", "--nointeractive"))  # upstream's aliases

    table = ok(cli.jmp("config", "exporter", "list"))
    assert "ALIAS" in table and "bench-1" in table and str(path) in table
    assert ok(cli.jmp("config", "exporters", "ls", "-o", "name")).split() == ["bench", "rack"]
    listed = json.loads(ok(cli.jmp("config", "e", "list", "-o", "json")))
    assert listed["kind"] == "ExporterConfigList"
    assert [item["alias"] for item in listed["items"]] == ["bench", "rack"]
    assert listed["items"][0]["endpoint"] == "grpc.example.com:443"
    assert "s3cret" not in json.dumps(listed)  # listings never show tokens
    as_yaml = yaml.safe_load(ok(cli.jmp("config", "exporter", "list", "-o", "yaml")))
    assert as_yaml["items"][1]["path"] == str(cli.config_home / "exporters" / "rack.yaml")

    again = cli.jmp("config", "exporter", "create", "bench", "--nointeractive")
    assert_clean_failure(again, "'bench' already exists", "--force")
    assert yaml.safe_load(path.read_text())["token"] == "s3cret"  # untouched
    ok(cli.jmp("config", "exporter", "create", "bench", "--nointeractive", "--force"))
    assert "token" not in yaml.safe_load(path.read_text())

    assert ok(cli.jmp("config", "e", "del", "bench", "-o", "path")).strip() == str(path)
    assert ok(cli.jmp("config", "exporter", "d", "rack")).startswith("exporter config 'rack' deleted")
    assert ok(cli.jmp("config", "exporter", "list", "-o", "name")) == ""
    assert_clean_failure(cli.jmp("config", "exporter", "delete", "bench"), "no exporter config named 'bench'")
    assert_clean_failure(cli.jmp("config", "exporter", "create", "../up", "--nointeractive"), "invalid config alias")


def test_exporter_create_edit_then_shell(cli: Cli) -> None:
    ok(cli.jmp("config", "exporter", "create", "bench", "--nointeractive"))
    good = cli.tmp / "good.yaml"
    good.write_text(HEADER + f"export:\n  lamp:\n    type: {LAMP}\n")
    env = {**cli.env, "EDITOR": f"cp {good}"}  # the "editor" saves good.yaml over the file it is given
    assert "is valid" in ok(cli.run([JMP, "config", "exporter", "edit", "bench"], env=env))
    result = cli.jmp("shell", "--exporter", "bench", "--", "j", "lamp", "on", "--level", "3")
    assert ok(result) == "on at 3%\n"

    bad = cli.tmp / "bad.yaml"
    bad.write_text(HEADER + "export:\n  lamp:\n    type: NoSuchDriver\n")
    edited = cli.run([JMP, "config", "exporter", "edit", "bench"], env={**cli.env, "EDITOR": f"cp {bad}"})
    target = cli.config_home / "exporters" / "bench.yaml"
    assert_clean_failure(edited, f"{target}:5", "unknown driver type 'NoSuchDriver'", "keeps your changes")
    assert target.read_text() == bad.read_text()  # the user's edit is not thrown away

    failing = cli.run([JMP, "config", "exporter", "edit", "bench"], env={**cli.env, "EDITOR": "false"})
    assert_clean_failure(failing, "Editing failed")
    assert_clean_failure(cli.run([JMP, "config", "exporter", "edit", "nope"], env=env), "'nope'",
                         "jmp config exporter create nope")


def test_system_wide_exporter_configs(cli: Cli) -> None:
    system = cli.system_dir / "exporters"
    system.mkdir(parents=True)
    (system / "bench.yaml").write_text(HEADER + f"export:\n  lamp:\n    type: {LAMP}\n")
    (system / "broken.yaml").write_text(HEADER + "export: [\n")
    listed = json.loads(ok(cli.jmp("config", "exporter", "list", "-o", "json")))["items"]
    assert [(i["alias"], i["path"]) for i in listed] == [
        ("bench", str(system / "bench.yaml")),
        ("broken", str(system / "broken.yaml")),
    ]
    assert "invalid YAML" in listed[1]["error"]  # one bad file does not break the listing
    assert ok(cli.jmp("shell", "--exporter", "bench", "--", "j", "lamp", "status")) == "0\n"

    # the user's config shadows the system one; deleting it says the system one is back in use
    ok(cli.jmp("config", "exporter", "create", "bench", "--nointeractive", "--name", "mine"))
    assert json.loads(ok(cli.jmp("config", "e", "ls", "-o", "json")))["items"][0]["name"] == "mine"
    deleted = cli.jmp("config", "exporter", "delete", "bench")
    assert ok(deleted)
    assert f"the system config {system / 'bench.yaml'}" in deleted.stderr
    assert_clean_failure(cli.jmp("config", "exporter", "delete", "bench"), "system-wide")


def test_client_config_round_trip(cli: Cli) -> None:
    first = ok(cli.jmp("config", "client", "create", "lab", "--namespace", "ns", "--name", "me",
                       "-e", "grpc.example.com:443", "-t", "tok", "-a", "jumpstarter_driver_*, acme.*",
                       "--nointeractive", "-o", "path")).strip()
    assert first == str(cli.config_home / "clients" / "lab.yaml")
    written = yaml.safe_load(Path(first).read_text())
    assert written["kind"] == "ClientConfig"
    assert written["drivers"] == {"allow": ["jumpstarter_driver_*", "acme.*"]}
    assert stat.S_IMODE(Path(first).stat().st_mode) == 0o600
    ok(cli.jmp("config", "clients", "c", "ci", "--unsafe", "--nointeractive"))

    # the first client created became the current one
    table = ok(cli.jmp("config", "client", "list"))
    rows = [line.split() for line in table.splitlines()[1:]]
    assert rows[0][0] == "ci" and rows[1][:2] == ["*", "lab"]  # sorted by alias, current marked
    listed = json.loads(ok(cli.jmp("config", "c", "ls", "-o", "json")))
    assert listed["kind"] == "ClientConfigList"
    assert listed["currentConfig"] == "lab"
    assert [(i["alias"], i["current"]) for i in listed["items"]] == [("ci", False), ("lab", True)]
    assert "tok" not in json.dumps(listed)
    assert ok(cli.jmp("config", "client", "list", "-o", "name")).split() == ["ci", "lab"]
    assert yaml.safe_load(ok(cli.jmp("config", "client", "list", "-o", "yaml")))["currentConfig"] == "lab"

    assert ok(cli.jmp("config", "client", "use", "ci")) == "current client: ci\n"
    assert yaml.safe_load((cli.config_home / "config.yaml").read_text())["config"] == {"current-client": "ci"}
    assert_clean_failure(cli.jmp("config", "client", "use", "nope"), "no client config named 'nope'")
    assert_clean_failure(cli.jmp("config", "client", "create", "ci", "--nointeractive"), "'ci' already exists")

    # deleting the current client hands "current" to the one left
    deleted = cli.jmp("config", "client", "delete", "ci")
    assert ok(deleted).startswith("client config 'ci' deleted")
    assert "current client is now 'lab'" in deleted.stderr
    assert json.loads(ok(cli.jmp("config", "client", "list", "-o", "json")))["currentConfig"] == "lab"
    ok(cli.jmp("config", "client", "del", "lab"))
    assert json.loads(ok(cli.jmp("config", "client", "list", "-o", "json"))) == {
        "apiVersion": "jumpstarter.dev/v1alpha1", "kind": "ClientConfigList", "currentConfig": None, "items": []}
    assert_clean_failure(cli.jmp("config", "client", "delete", "lab"), "no client config named 'lab'")


def test_client_create_out_file(cli: Cli) -> None:
    out = cli.tmp / "elsewhere" / "client.yaml"
    out.parent.mkdir()
    ok(cli.jmp("config", "client", "create", "lab", "--out", str(out), "-e", "ep:1", "--nointeractive"))
    assert yaml.safe_load(out.read_text())["endpoint"] == "ep:1"
    assert ok(cli.jmp("config", "client", "list", "-o", "name")) == ""  # not in the config home


def test_create_prompts_on_a_terminal(cli: Cli) -> None:
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"lab\nbench-1\ngrpc.example.com:443\n")
        result = cli.run([JMP, "config", "exporter", "create", "bench", "--token", "given"], stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    ok(result)
    written = yaml.safe_load((cli.config_home / "exporters" / "bench.yaml").read_text())
    assert written["metadata"] == {"name": "bench-1", "namespace": "lab"}
    assert written["endpoint"] == "grpc.example.com:443"
    assert written["token"] == "given"  # given as a flag: not asked


def test_small_commands(cli: Cli) -> None:
    help_text = ok(cli.jmp("--help"))
    for command in ("run", "shell", "config", "driver", "version", "completion"):
        assert command in help_text
    assert "exporter" in ok(cli.jmp("config", "--help")) and "client" in ok(cli.jmp("conf", "--help"))
    assert "Composite" in ok(cli.jmp("driver", "list"))
    assert "Composite" in ok(cli.jmp("driver", "list", "-o", "name")).split()
    assert ok(cli.jmp("version")).startswith("Jumpstarter ")
    assert "version" in json.loads(ok(cli.jmp("ver", "-o", "json")))
    script = ok(cli.jmp("completion", "bash"))
    assert "_JMP_COMPLETE" in script and "complete " in script
    assert_clean_failure(cli.jmp("completion", "tcsh"), "tcsh")
