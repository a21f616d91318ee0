"""The generated and the hand-written references keep up with the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from jumpstarter.config.exporter import DriverInstance, ExporterConfig, HookInstance
from jumpstarter.testing.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[3]


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    generator = _generator()
    expected = generator.render()
    current = generator.OUTPUT.read_text() if generator.OUTPUT.exists() else ""
    assert current == expected, (
        "docs/reference/cli.md is stale: run `make docs` (or `python scripts/gen_cli_docs.py`) and commit it"
    )


def test_every_plugin_setting_is_documented() -> None:
    page = (ROOT / "docs" / "pytest.md").read_text()
    missing = [name for s in SETTINGS for name in (s.flag, s.env, s.ini) if name and f"`{name}" not in page]
    assert not missing, f"docs/pytest.md does not mention {missing}"


def _field_names(model: type[BaseModel], prefix: str = "") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        names.append(prefix + key)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in (
            DriverInstance, HookInstance
        ):
            names.extend(_field_names(annotation, f"{prefix}{key}."))
    return names


def test_every_exporter_config_field_is_documented() -> None:
    page = (ROOT / "docs" / "reference" / "exporter-config.md").read_text()
    fields = _field_names(ExporterConfig) + [f.alias or n for n, f in DriverInstance.model_fields.items()]
    fields += [f.alias or n for n, f in HookInstance.model_fields.items()]
    fields = [f.rsplit(".", 1)[-1] if f.startswith("hooks.") else f for f in fields]
    missing = sorted({f for f in fields if f"`{f}`" not in page and f"`{f}." not in page})
    assert not missing, f"docs/reference/exporter-config.md does not document {missing}"
