"""Where configuration files live, alias rules, and atomic writes (no pydantic, no YAML here).

Layout (compatible with upstream Jumpstarter):

* config home: ``$JMP_CLIENT_CONFIG_HOME``, else ``$XDG_CONFIG_HOME/jumpstarter``, else
  ``~/.config/jumpstarter``;
* ``<home>/config.yaml``: the user config (current client);
* ``<home>/clients/<alias>.yaml``: client configs;
* ``<home>/exporters/<alias>.yaml``: exporter configs, with ``/etc/jumpstarter/exporters/<alias>.yaml``
  as a read-only fallback (the user's file wins). ``$JMP_SYSTEM_CONFIG_DIR`` replaces
  ``/etc/jumpstarter``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from jumpstarter.errors import ConfigurationError

#: Overrides the whole config home.
ENV_CONFIG_HOME = "JMP_CLIENT_CONFIG_HOME"
#: Overrides the system-wide directory (``/etc/jumpstarter``); meant for tests and packaging.
ENV_SYSTEM_DIR = "JMP_SYSTEM_CONFIG_DIR"
SYSTEM_CONFIG_DIR = "/etc/jumpstarter"
CLIENTS_DIR = "clients"
EXPORTERS_DIR = "exporters"
USER_CONFIG_FILE = "config.yaml"
SUFFIX = ".yaml"
#: Client and exporter configs hold tokens: owner-only.
SECRET_MODE = 0o600


def config_home() -> Path:
    """The per-user configuration directory."""
    explicit = os.environ.get(ENV_CONFIG_HOME)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "jumpstarter"


def system_config_dir() -> Path:
    """The system-wide configuration directory (read-only fallback for exporter configs)."""
    return Path(os.environ.get(ENV_SYSTEM_DIR) or SYSTEM_CONFIG_DIR)


def validate_alias(alias: str) -> str:
    """Return `alias` if it can name a config file, else raise `ConfigurationError`."""
    if not alias or alias in (".", "..") or ".." in alias or any(c in alias for c in "/\\\0"):
        raise ConfigurationError(
            f"invalid config alias {alias!r}: it must be non-empty and contain no '/' or '..'"
        )
    return alias


def user_config_path() -> Path:
    """The user config file (``config.yaml``) holding the current client."""
    return config_home() / USER_CONFIG_FILE


def clients_dir() -> Path:
    """Directory of client configs."""
    return config_home() / CLIENTS_DIR


def client_path(alias: str) -> Path:
    """The file of client config `alias`."""
    return clients_dir() / f"{validate_alias(alias)}{SUFFIX}"


def exporter_dirs() -> list[Path]:
    """Directories searched for exporter configs, the one that wins first."""
    return [config_home() / EXPORTERS_DIR, system_config_dir() / EXPORTERS_DIR]


def exporter_path(alias: str) -> Path:
    """The user's file of exporter config `alias` (where it is written)."""
    return exporter_dirs()[0] / f"{validate_alias(alias)}{SUFFIX}"


def find_exporter(alias: str) -> Path | None:
    """The exporter config file `alias` resolves to (user directory first), or None."""
    name = f"{validate_alias(alias)}{SUFFIX}"
    for directory in exporter_dirs():
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def aliases_in(directory: Path) -> list[str]:
    """Aliases of the config files in `directory`, sorted (empty when it does not exist)."""
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.iterdir() if p.suffix == SUFFIX and p.is_file())


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` so readers see the old or the new file, never half of one.

    The file gets permission bits `mode` from the start (no window where a token is world-readable).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
