"""Where a direct-mode exporter keeps its certificate and passphrase: next to its config file."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from jumpstarter.direct.tls import ServerIdentity, load_or_create
from jumpstarter.errors import ConfigurationError


def state_dir(config_path: Path) -> Path:
    """`<dir>/<alias>.direct/` beside the exporter config `<dir>/<alias>.yaml`; falls back to the
    user's config home when the config lives in a read-only place (e.g. /etc)."""
    candidate = config_path.parent / f"{config_path.stem}.direct"
    if os.access(config_path.parent, os.W_OK) or candidate.exists():
        return candidate
    from jumpstarter.config.paths import config_home

    return config_home() / "exporters" / f"{config_path.stem}.direct"


def server_identity(config_path: Path, cert: str | None, key: str | None) -> ServerIdentity:
    """The given certificate/key, or the self-signed pair kept beside the config (made on first run)."""
    if bool(cert) != bool(key):
        raise ConfigurationError("give both --tls-cert and --tls-key, or neither (a self-signed pair is then used)")
    if cert and key:
        return ServerIdentity(Path(cert).read_bytes(), Path(key).read_bytes())
    identity, created = load_or_create(state_dir(config_path))
    if created:
        print(f"created a self-signed certificate in {state_dir(config_path)}", file=sys.stderr)
    return identity


def stored_passphrase(config_path: Path) -> str:
    """The passphrase kept beside the config, generated (and printed once) on first use."""
    path = state_dir(config_path) / "passphrase"
    if path.is_file():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(18)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    print(f"generated passphrase {secret} (kept in {path}); clients pass it with --passphrase", file=sys.stderr)
    return secret
