"""Target resolution: which source wins, how values are converted, what is an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jumpstarter.errors import ConfigurationError
from jumpstarter.testing.settings import DirectSpec, LeaseSpec, LocalSpec, ShellSpec, Sources, resolve

CWD = Path("/work/here")
INI_DIR = Path("/repo")


def sources(cli: dict[str, Any] | None = None, env: dict[str, str] | None = None,
            ini: dict[str, Any] | None = None) -> Sources:
    return Sources(cli=cli or {}, env=env or {}, ini=ini or {}, cwd=CWD, ini_dir=INI_DIR)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (sources(), None),
        (sources(cli={"exporter_config": "board.yaml"}), LocalSpec(CWD / "board.yaml", source="--jmp-exporter-config")),
        (sources(ini={"jmp_exporter_config": "boards/a.yaml"}),
         LocalSpec(INI_DIR / "boards/a.yaml", source="ini key jmp_exporter_config")),
        (sources(env={"JMP_EXPORTER_CONFIG": "/abs/b.yaml"}),
         LocalSpec(Path("/abs/b.yaml"), source="$JMP_EXPORTER_CONFIG")),
        # the shell's exporter beats environment and ini, but not the command line
        (sources(env={"JUMPSTARTER_HOST": "/tmp/s.sock", "JMP_DIRECT": "h:1"}, ini={"jmp_exporter_config": "x.yaml"}),
         ShellSpec("/tmp/s.sock")),
        (sources(cli={"direct": "lab:19090"}, env={"JUMPSTARTER_HOST": "/tmp/s.sock"}),
         DirectSpec("lab:19090", source="--jmp-direct")),
        # environment beats ini, the mode's other settings merge key by key
        (sources(env={"JMP_DIRECT": "lab:1", "JMP_GRPC_PASSPHRASE": "pw"},
                 ini={"jmp_exporter_config": "x.yaml", "jmp_accept_fingerprint": "SHA256:AA", "jmp_insecure": "true"}),
         DirectSpec("lab:1", passphrase="pw", accept_fingerprint="SHA256:AA", insecure=True, source="$JMP_DIRECT")),
        (sources(cli={"client": "lab", "selector": ["board=rpi4", "site=a,rack=2"]}),
         LeaseSpec("lab", "board=rpi4,site=a,rack=2", source="--jmp-client and --jmp-selector")),
        (sources(cli={"selector": ["board=x"]}, ini={"jmp_client": "ci", "jmp_lease_duration": "2h"}),
         LeaseSpec("ci", "board=x", duration="2h", source="--jmp-selector")),
        (sources(ini={"jmp_selector": "board=a\nsite=b"}),
         LeaseSpec(None, "board=a,site=b", source="ini key jmp_selector")),
        (sources(cli={"exporter_config": "a.yaml", "run_hooks": True}),
         LocalSpec(CWD / "a.yaml", run_hooks=True, source="--jmp-exporter-config")),
    ],
)
def test_target_resolution(given: Sources, expected: Any) -> None:
    assert resolve(given).target == expected


def test_console_settings() -> None:
    resolved = resolve(sources(ini={"jmp_console": "serial", "jmp_console_lines": "10"},
                               env={"JMP_CONSOLE_LINES": "20"}))
    assert (resolved.console, resolved.console_lines) == ("serial", 20)
    assert resolve(sources()).console_lines == 50


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (sources(cli={"exporter_config": "a.yaml", "direct": "h:1"}),
         "conflicting Jumpstarter targets: --jmp-exporter-config, --jmp-direct"),
        (sources(ini={"jmp_direct": "h:1", "jmp_client": "lab"}), "conflicting Jumpstarter targets"),
        (sources(cli={"direct": "h:1"}, ini={"jmp_insecure": "maybe"}), "ini key jmp_insecure: expected true or false"),
        (sources(env={"JMP_CONSOLE_LINES": "many"}), "$JMP_CONSOLE_LINES: expected a whole number"),
        (sources(env={"JMP_CONSOLE_LINES": "0"}), "$JMP_CONSOLE_LINES: must be at least 1"),
    ],
)
def test_resolution_errors(given: Sources, message: str) -> None:
    with pytest.raises(ConfigurationError, match=None) as caught:
        resolve(given)
    assert message in str(caught.value)


def test_describe_names_the_source() -> None:
    target = resolve(sources(ini={"jmp_exporter_config": "a.yaml"})).target
    assert target is not None
    assert target.describe() == "local exporter config /repo/a.yaml (from ini key jmp_exporter_config)"
