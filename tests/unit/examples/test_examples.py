"""Everything in examples/ stays valid: exporter configs load, the custom driver runs under
`jmp shell`, the CI pipelines are well-formed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import yaml

from jumpstarter.exporter.loader import load_exporter

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
CUSTOM_DRIVER_SRC = EXAMPLES / "custom-driver" / "src"
CONFIGS = sorted(
    p for p in EXAMPLES.rglob("*.yaml")
    if "ci" not in p.relative_to(EXAMPLES).parts and "ExporterConfig" in p.read_text()
)
#: Configs naming files that only exist once built (the QEMU demo's guest: examples/qemu/build-guest.sh).
NEEDS_FILES = {"qemu/exporter.yaml": Path("/var/tmp/jumpstarter-dut/kernel")}


def test_there_is_a_config_for_every_builtin_driver() -> None:
    from jumpstarter.config.drivers import installed_drivers

    named = "\n".join((EXAMPLES / "exporters" / name).read_text() for name in os.listdir(EXAMPLES / "exporters"))
    builtin = {name: target for name, target in installed_drivers().items()
               if (ROOT / "src" / target.split(":")[0].split(".")[0]).is_dir()}
    missing = [name for name, target in builtin.items()
               if name not in named and target.replace(":", ".") not in named]
    assert not missing, f"examples/exporters/ has no config using {missing}"


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(EXAMPLES)) for p in CONFIGS])
def test_exporter_config_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needed = NEEDS_FILES.get(str(path.relative_to(EXAMPLES)))
    if needed is not None and not needed.exists():
        pytest.skip(f"{needed} does not exist (built by examples/qemu/build-guest.sh)")
    monkeypatch.syspath_prepend(str(CUSTOM_DRIVER_SRC))
    exporter = load_exporter(path)
    try:
        assert exporter.root.children, f"{path} exports no drivers"
    finally:
        anyio.run(exporter.session.close_drivers)


def test_custom_driver_j_commands_in_a_shell(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(CUSTOM_DRIVER_SRC), os.environ.get("PYTHONPATH", "")]),
               XDG_CONFIG_HOME=str(tmp_path))
    env.pop("JUMPSTARTER_HOST", None)
    jmp = str(Path(sys.executable).parent / "jmp")
    result = subprocess.run(
        [jmp, "shell", "--exporter-config", str(EXAMPLES / "custom-driver" / "exporter.yaml"), "--",
         "sh", "-c", "j relay close 2 && j relay pulse 1 --seconds 0 && j relay status"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:3] == ["1: open", "2: closed", "3: open"]


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_examples_run_the_tests_in_a_shell(name: str) -> None:
    text = (EXAMPLES / "ci" / name).read_text()
    pipeline = yaml.safe_load(text)
    assert isinstance(pipeline, dict)
    assert "jmp shell --exporter" in text and "pytest --junitxml=report.xml" in text
    if name == "github-actions.yml":
        assert set(pipeline["jobs"]) == {"local", "direct", "distributed"}
        steps = pipeline["jobs"]["local"]["steps"]
        assert any("jmp shell --exporter-config examples/exporters/power.yaml" in step.get("run", "") for step in steps)


def _command_lines(text: str) -> list[list[str]]:
    """Every `jmp ...` and `pytest ...` invocation in a CI file (comments included), as words."""
    import re
    import shlex

    lines = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.split("# ", 1)[-1] if raw.lstrip().startswith("#") else raw
        for match in re.finditer(r"\b(jmp|pytest) [^|;&)>`]*", line):
            try:
                words = shlex.split(match.group(0).replace("${{", "X").replace("}}", "X"))
            except ValueError:
                words = match.group(0).split()
            lines.append(words)
    return lines


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_example_commands_use_options_that_exist(name: str) -> None:
    import click

    from jumpstarter.cli.jmp import jmp
    from jumpstarter.testing.settings import SETTINGS

    pytest_options = {s.flag for s in SETTINGS} | {"-q", "-n", "-o", "--junitxml"}
    checked = 0
    for words in _command_lines((EXAMPLES / "ci" / name).read_text()):
        if words[0] == "pytest":
            unknown = {w.split("=")[0] for w in words[1:] if w.startswith("-")} - pytest_options
            assert not unknown, f"{name}: pytest options {unknown} in {' '.join(words)}"
            continue
        command: click.Command = jmp
        ctx = click.Context(jmp)
        rest = words[1:]
        while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
            sub = command.get_command(ctx, rest[0])
            assert sub is not None, f"{name}: no command {' '.join(words[:words.index(rest[0]) + 1])}"
            command, rest = sub, rest[1:]
        known = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
        for word in rest:
            if word == "--":
                break
            if word.startswith("-"):
                assert word.split("=")[0] in known, f"{name}: {' '.join(words)}: unknown option {word}"
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_examples_do_not_hide_a_failed_jmp(name: str) -> None:
    """`echo "X=$(jmp ...)"` and `export X=$(jmp ...)` succeed when jmp fails, so the job would go
    on without a lease; the examples assign to a variable first (a failure then fails the step)."""
    import re

    text = (EXAMPLES / "ci" / name).read_text()
    assert not re.search(r"\b(echo|export)\b[^\n]*\$\(jmp ", text)
