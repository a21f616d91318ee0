"""Config files on disk: locations, aliases, create/list/load/delete/use, atomic 0600 writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from jumpstarter.config import paths, store
from jumpstarter.config.client import ClientConfig
from jumpstarter.config.exporter import ExporterConfig
from jumpstarter.config.loading import ConfigNotFoundError
from jumpstarter.errors import ConfigurationError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private XDG config home and system directory; returns the jumpstarter config home."""
    monkeypatch.delenv(paths.ENV_CONFIG_HOME, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(paths.ENV_SYSTEM_DIR, str(tmp_path / "etc"))
    return tmp_path / "xdg" / "jumpstarter"


def client(name: str) -> ClientConfig:
    return ClientConfig.model_validate(
        {"metadata": {"namespace": "lab", "name": name}, "endpoint": "grpc.example.com:443", "token": "t0k"}
    )


def exporter(description: str) -> ExporterConfig:
    return ExporterConfig.model_validate(
        {"description": description, "export": {"group": {"children": {"inner": {"type": "Composite"}}}}}
    )


def test_config_home_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(paths.ENV_CONFIG_HOME, raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert paths.config_home() == tmp_path / "user" / ".config" / "jumpstarter"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert paths.config_home() == tmp_path / "xdg" / "jumpstarter"
    monkeypatch.setenv(paths.ENV_CONFIG_HOME, str(tmp_path / "explicit"))
    assert paths.config_home() == tmp_path / "explicit"
    assert paths.client_path("lab") == tmp_path / "explicit" / "clients" / "lab.yaml"
    assert paths.user_config_path() == tmp_path / "explicit" / "config.yaml"


def test_system_dir_default_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(paths.ENV_SYSTEM_DIR, raising=False)
    assert paths.system_config_dir() == Path("/etc/jumpstarter")
    monkeypatch.setenv(paths.ENV_SYSTEM_DIR, str(tmp_path))
    assert paths.exporter_dirs()[1] == tmp_path / "exporters"


@pytest.mark.parametrize("alias", ["", ".", "..", "a/b", "../x", "x..y", "a\\b"])
def test_bad_aliases(alias: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid config alias"):
        paths.validate_alias(alias)


def test_client_round_trip_and_use(home: Path) -> None:
    assert store.list_clients() == {}
    assert store.current_client() is None
    path = store.save_client(client("alice"), "lab")
    store.save_client(client("bob"), "ci")
    assert path == home / "clients" / "lab.yaml"
    assert store.list_clients() == {"ci": home / "clients" / "ci.yaml", "lab": path}

    loaded = store.load_client("lab")
    assert loaded.metadata.name == "alice" and loaded.token == "t0k"
    assert ClientConfig.load("ci").metadata.name == "bob"

    store.use_client("lab")
    assert store.current_client() == "lab"
    assert "current-client: lab" in (home / "config.yaml").read_text()
    store.use_client("ci")
    assert store.current_client() == "ci"

    store.delete_client("ci")
    assert store.current_client() is None  # deleting the current client forgets it
    assert list(store.list_clients()) == ["lab"]
    with pytest.raises(ConfigNotFoundError):
        store.load_client("ci")
    with pytest.raises(ConfigNotFoundError):
        store.delete_client("ci")
    with pytest.raises(ConfigNotFoundError):
        store.use_client("nobody")


def test_client_configs_are_private_and_written_atomically(home: Path) -> None:
    path = store.save_client(client("alice"), "lab")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.stat().st_ino
    store.save_client(client("alice2"), "lab")
    assert path.stat().st_ino != before  # replaced by rename, not rewritten in place
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["lab.yaml"]  # no temp files left


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "dir" / "file.yaml"
    paths.atomic_write(target, "old: 1\n")
    with pytest.raises(UnicodeEncodeError):
        paths.atomic_write(target, "new: \udc80\n")  # a lone surrogate cannot be written as UTF-8
    assert target.read_text() == "old: 1\n"
    assert os.listdir(target.parent) == ["file.yaml"]


def test_exporter_round_trip_and_system_fallback(home: Path, tmp_path: Path) -> None:
    system = tmp_path / "etc" / "exporters"
    system.mkdir(parents=True)
    (system / "shared.yaml").write_text("kind: ExporterConfig\ndescription: from etc\nexport: {}\n")
    (system / "bench.yaml").write_text("kind: ExporterConfig\ndescription: system bench\nexport: {}\n")

    path = store.save_exporter(exporter("user bench"), "bench")
    assert path == home / "exporters" / "bench.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.list_exporters() == {"bench": path, "shared": system / "shared.yaml"}

    assert store.load_exporter("bench").description == "user bench"  # the user's file wins
    assert ExporterConfig.load("shared").description == "from etc"
    loaded = store.load_exporter("bench")
    assert loaded.build_drivers().children["group"].children["inner"] is not None

    store.delete_exporter("bench")
    assert store.load_exporter("bench").description == "system bench"
    with pytest.raises(ConfigNotFoundError, match="system-wide config"):
        store.delete_exporter("shared")
    with pytest.raises(ConfigNotFoundError, match="no exporter config named 'ghost'"):
        store.load_exporter("ghost")


def test_loading_through_the_store_reports_file_errors(home: Path) -> None:
    clients = home / "clients"
    clients.mkdir(parents=True)
    (clients / "bad.yaml").write_text("kind: ClientConfig\nendpiont: x:1\n")
    with pytest.raises(ConfigurationError) as info:
        store.load_client("bad")
    assert str(info.value).startswith(f"{clients / 'bad.yaml'}:2: endpiont: unknown field")
