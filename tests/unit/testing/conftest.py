"""Shared by the plugin tests: a clean environment and a small exporter config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

EXPORTER = """\
apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata:
  name: bench
export:
  power:
    type: MockPower
  echo:
    type: EchoNetwork
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No target leaks in from the environment this suite runs in (say, a surrounding `jmp shell`)."""
    for name in list(os.environ):
        if name == "JUMPSTARTER_HOST" or name.startswith(("JMP_", "PYTEST_XDIST")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def exporter_yaml(pytester: pytest.Pytester) -> Path:
    """`exporter.yaml` (a MockPower `power` and an EchoNetwork `echo`) in the pytester directory."""
    path = pytester.path / "exporter.yaml"
    path.write_text(EXPORTER)
    return path
