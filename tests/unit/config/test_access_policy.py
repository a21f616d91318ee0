"""Upstream's ExporterAccessPolicy documents: validation and mapping onto our access policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from jumpstarter.config.access_policy import ExporterAccessPolicy, owned_by
from jumpstarter.controller.model import Policy
from jumpstarter.errors import ConfigurationError

DOCUMENT = """\
apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterAccessPolicy
metadata:
  name: lab
  namespace: team
spec:
  exporterSelector:
    matchLabels: {board: rpi4}
    matchExpressions:
      - {key: site, operator: In, values: [lab1, lab2]}
  policies:
    - priority: 10
      from:
        - clientSelector: {matchLabels: {team: qa}}
        - clientSelector:
            matchExpressions: [{key: ci, operator: Exists}]
      maximumDuration: 4h
    - from:
        - clientSelector: {}
"""


def load(tmp_path: Path, text: str) -> ExporterAccessPolicy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return ExporterAccessPolicy.from_file(path)


def test_mapping(tmp_path: Path) -> None:
    exporters = "board=rpi4,site in (lab1,lab2)"
    assert load(tmp_path, DOCUMENT).policies() == [
        Policy("team", "lab.0.0", exporters, client_selector="team=qa", maximum_duration=14400, priority=10),
        Policy("team", "lab.0.1", exporters, client_selector="ci", maximum_duration=14400, priority=10),
        Policy("team", "lab.1.0", exporters, client_selector=""),  # every client of the namespace
    ]


def test_a_single_entry_keeps_the_name(tmp_path: Path) -> None:
    single = DOCUMENT.split("        - clientSelector:\n")[0] + "      maximumDuration: 4h\n"
    assert [p.name for p in load(tmp_path, single).policies()] == ["lab"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("maximumDuration: 4h", "maximumDuration: soon"), "invalid duration 'soon'"),
        (("operator: In", "operator: Near"), "operator"),
        (("priority: 10", "priority: 10\n      spotAccess: true"), "spot access is not supported"),
        (("kind: ExporterAccessPolicy", "kind: ExporterConfig"), "ExporterAccessPolicy"),
        (("  policies:", "  colour: blue\n  policies:"), "colour"),
    ],
)
def test_errors_name_the_problem(tmp_path: Path, change: tuple[str, str], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        load(tmp_path, DOCUMENT.replace(*change))


@pytest.mark.parametrize(
    ("policy", "owned"),
    [("lab", True), ("lab.0.1", True), ("lab.12.3", True), ("lab.x.1", False), ("lab2.0.0", False),
     ("lab.0", False), ("other", False)],
)
def test_owned_by(policy: str, owned: bool) -> None:
    assert owned_by("lab", policy) is owned
