"""Every Python sample in README.md and docs/ runs, so the docs cannot rot (see `samples.py`)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from tests.unit.docs.samples import Sample, samples_in

ROOT = Path(__file__).resolve().parents[3]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SAMPLES = [s for f in FILES for s in samples_in(f, f.relative_to(ROOT))]


def test_samples_were_found() -> None:
    assert sum(1 for s in SAMPLES if s.skip is None) >= 8


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_sample(sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if sample.skip is not None:
        pytest.skip(sample.skip)
    monkeypatch.chdir(tmp_path)  # samples may write files
    if sample.exporter is None:
        run(sample, {})
        return
    from jumpstarter.testing.settings import LocalSpec
    from jumpstarter.testing.targets import open_target
    from jumpstarter.utils.env import env

    with open_target(LocalSpec(ROOT / sample.exporter)) as connected:
        for key, value in connected.env.items():
            monkeypatch.setenv(key, value)
        run(sample, {"env": env})


def run(sample: Sample, predefined: dict[str, object]) -> None:
    """Run the sample's blocks as the code of one module (dataclasses look their module up)."""
    module = types.ModuleType("__main__sample__")
    module.__dict__.update(predefined)
    sys.modules[module.__name__] = module
    try:
        for code in sample.compiled(ROOT):
            exec(code, module.__dict__)
    finally:
        del sys.modules[module.__name__]
