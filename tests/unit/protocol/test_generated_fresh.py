"""The committed generated code is what `scripts/gen_proto.py` makes from proto/ today."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "src" / "jumpstarter" / "protocol" / "v1"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generated_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_committed_protocol_code_is_fresh(tmp_path: Path) -> None:
    load_generator().generate(tmp_path)
    fresh = generated_files(tmp_path / "v1")
    committed = generated_files(COMMITTED)
    assert sorted(committed) == sorted(fresh), "files differ: run `python scripts/gen_proto.py`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], f"stale generated files {stale}: run `python scripts/gen_proto.py`"


def test_every_proto_file_has_generated_modules() -> None:
    for proto in (ROOT / "proto" / "jumpstarter" / "v1").glob("*.proto"):
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert (COMMITTED / f"{proto.stem}{suffix}").is_file()
