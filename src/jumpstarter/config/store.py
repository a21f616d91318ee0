"""Config files on disk by alias: list, load, save and delete client and exporter configs, and
choose the current client."""

from __future__ import annotations

from pathlib import Path

from jumpstarter.config import paths
from jumpstarter.config.client import ClientConfig
from jumpstarter.config.exporter import ExporterConfig
from jumpstarter.config.loading import ConfigNotFoundError
from jumpstarter.config.user import UserConfig, UserSettings

# ---- clients -------------------------------------------------------------------------------


def list_clients() -> dict[str, Path]:
    """Client config aliases and their files, sorted by alias."""
    directory = paths.clients_dir()
    return {alias: directory / f"{alias}{paths.SUFFIX}" for alias in paths.aliases_in(directory)}


def load_client(alias: str) -> ClientConfig:
    """Load client config `alias`; raises `ConfigNotFoundError` when there is none."""
    path = paths.client_path(alias)
    if not path.is_file():
        raise ConfigNotFoundError(f"no client config named {alias!r} (looked for {path})")
    return ClientConfig.from_file(path)


def save_client(config: ClientConfig, alias: str) -> Path:
    """Write `config` as client config `alias` (atomically, mode 0600); returns the file."""
    path = paths.client_path(alias)
    paths.atomic_write(path, config.to_yaml(), paths.SECRET_MODE)
    return path


def delete_client(alias: str) -> Path:
    """Delete client config `alias`, and forget it as the current client if it was."""
    path = paths.client_path(alias)
    try:
        path.unlink()
    except FileNotFoundError:
        raise ConfigNotFoundError(f"no client config named {alias!r} (looked for {path})") from None
    if current_client() == alias:
        _set_current_client(None)
    return path


# ---- current client (user config) ----------------------------------------------------------


def load_user_config() -> UserConfig:
    """The user config, or an empty one when the file does not exist yet."""
    path = paths.user_config_path()
    if not path.is_file():
        return UserConfig()
    return UserConfig.from_file(path)


def save_user_config(config: UserConfig) -> Path:
    """Write the user config atomically; returns the file."""
    path = paths.user_config_path()
    paths.atomic_write(path, config.to_yaml())
    return path


def current_client() -> str | None:
    """Alias of the current client config, or None when none is chosen."""
    return load_user_config().config.current_client


def use_client(alias: str) -> Path:
    """Make client config `alias` the current one; returns the user config file."""
    if not paths.client_path(alias).is_file():
        raise ConfigNotFoundError(f"no client config named {alias!r} (looked in {paths.clients_dir()})")
    return _set_current_client(alias)


def _set_current_client(alias: str | None) -> Path:
    user = load_user_config()
    settings = UserSettings.model_validate({"current-client": alias})
    return save_user_config(user.model_copy(update={"config": settings}))


# ---- exporters -----------------------------------------------------------------------------


def list_exporters() -> dict[str, Path]:
    """Exporter config aliases and the file each resolves to (user directory first), sorted."""
    found: dict[str, Path] = {}
    for directory in paths.exporter_dirs():
        for alias in paths.aliases_in(directory):
            found.setdefault(alias, directory / f"{alias}{paths.SUFFIX}")
    return dict(sorted(found.items()))


def load_exporter(alias: str) -> ExporterConfig:
    """Load exporter config `alias`; the user's file wins over the system-wide one."""
    path = paths.find_exporter(alias)
    if path is None:
        searched = ", ".join(str(d) for d in paths.exporter_dirs())
        raise ConfigNotFoundError(f"no exporter config named {alias!r} (looked in {searched})")
    return ExporterConfig.from_file(path)


def save_exporter(config: ExporterConfig, alias: str) -> Path:
    """Write `config` as the user's exporter config `alias` (atomically, mode 0600: it holds a
    token); returns the file."""
    path = paths.exporter_path(alias)
    paths.atomic_write(path, config.to_yaml(), paths.SECRET_MODE)
    return path


def delete_exporter(alias: str) -> Path:
    """Delete the user's exporter config `alias` (system-wide files are left to the administrator)."""
    path = paths.exporter_path(alias)
    try:
        path.unlink()
    except FileNotFoundError:
        system = paths.find_exporter(alias)
        hint = f"; {system} is a system-wide config, remove it as its owner" if system is not None else ""
        raise ConfigNotFoundError(f"no exporter config named {alias!r} in {path.parent}{hint}") from None
    return path
