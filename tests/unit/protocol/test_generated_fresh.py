"""The committed generated code is what `scripts/gen_proto.py` makes from proto/ today."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROTOCOL = ROOT / "src" / "jumpstarter" / "protocol"
#: proto package directory (under proto/jumpstarter) -> generated directory (under protocol/)
PACKAGES = {"v1": "v1", "client/v1": "client/v1", "admin/v1": "admin/v1"}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generated_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("protocol")
    load_generator().generate(out)
    return out


@pytest.mark.parametrize("package", sorted(PACKAGES.values()))
def test_committed_protocol_code_is_fresh(fresh: Path, package: str) -> None:
    new = generated_files(fresh / package)
    committed = generated_files(PROTOCOL / package)
    assert sorted(committed) == sorted(new), "files differ: run `python scripts/gen_proto.py`"
    stale = [name for name in new if new[name] != committed[name]]
    assert stale == [], f"stale generated files {stale}: run `python scripts/gen_proto.py`"


@pytest.mark.parametrize(("proto_dir", "package"), sorted(PACKAGES.items()))
def test_every_proto_file_has_generated_modules(proto_dir: str, package: str) -> None:
    protos = list((ROOT / "proto" / "jumpstarter" / proto_dir).glob("*.proto"))
    assert protos
    for proto in protos:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert (PROTOCOL / package / f"{proto.stem}{suffix}").is_file()
