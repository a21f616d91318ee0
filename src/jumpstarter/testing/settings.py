"""Which target a pytest session drives, resolved from options, environment and ini (pure logic).

Precedence, highest first: command-line options, the surrounding `jmp shell` (`JUMPSTARTER_HOST`),
environment variables, then `pytest.ini` / `pyproject.toml` keys. The highest source that names a
target decides the mode; the mode's other settings (passphrase, selector, ...) are then taken key
by key from the highest source that has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jumpstarter.errors import ConfigurationError

Kind = Literal["str", "path", "list", "bool", "int"]


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its command-line flag, environment variable and ini key."""

    name: str
    flag: str
    env: str | None
    ini: str
    kind: Kind
    help: str
    metavar: str | None = None
    default: Any = None


SETTINGS: tuple[Setting, ...] = (
    Setting("exporter_config", "--jmp-exporter-config", "JMP_EXPORTER_CONFIG", "jmp_exporter_config", "path",
            "Serve this exporter config in-process for the session (local mode).", "FILE"),
    Setting("direct", "--jmp-direct", "JMP_DIRECT", "jmp_direct", "str",
            "Use the direct-mode exporter at HOST:PORT (started with `jmp run --tls-grpc-listener`).", "HOST:PORT"),
    Setting("passphrase", "--jmp-passphrase", "JMP_GRPC_PASSPHRASE", "jmp_passphrase", "str",
            "Passphrase of the direct-mode exporter.", "TEXT"),
    Setting("accept_fingerprint", "--jmp-accept-fingerprint", "JMP_ACCEPT_FINGERPRINT", "jmp_accept_fingerprint",
            "str", "Trust the direct-mode exporter's certificate with this fingerprint (then pinned).", "SHA256:.."),
    Setting("tls_ca", "--jmp-tls-ca", "JMP_TLS_CA", "jmp_tls_ca", "path",
            "Verify the direct-mode exporter's certificate with this CA (PEM).", "FILE"),
    Setting("insecure", "--jmp-insecure", "JMP_GRPC_INSECURE", "jmp_insecure", "bool",
            "Direct mode over plain TCP (no TLS).", default=False),
    Setting("client", "--jmp-client", "JMP_CLIENT", "jmp_client", "str",
            "Client config alias for distributed mode (leases a device through a controller).", "ALIAS"),
    Setting("selector", "--jmp-selector", "JMP_SELECTOR", "jmp_selector", "list",
            "Label selector of the device to lease (k=v, repeatable; distributed mode).", "K=V"),
    Setting("lease_duration", "--jmp-lease-duration", "JMP_LEASE_DURATION", "jmp_lease_duration", "str",
            "How long to lease the device for (distributed mode).", "DURATION", "30m"),
    Setting("run_hooks", "--jmp-run-hooks", "JMP_RUN_HOOKS", "jmp_run_hooks", "bool",
            "Run the exporter config's beforeLease/afterLease hooks (local mode).", default=False),
    Setting("console", "--jmp-console", "JMP_CONSOLE", "jmp_console", "str",
            "Driver (dotted name, e.g. serial or qemu.console) whose recent output goes into failure reports.",
            "NAME"),
    Setting("console_lines", "--jmp-console-lines", "JMP_CONSOLE_LINES", "jmp_console_lines", "int",
            "How many console lines a failure report shows.", "N", 50),
)
BY_NAME = {s.name: s for s in SETTINGS}
#: Settings that name a target, by mode.
MODE_KEYS = {"local": ("exporter_config",), "direct": ("direct",), "distributed": ("client", "selector")}
HOST_ENV = "JUMPSTARTER_HOST"

HOW_TO = (
    "no Jumpstarter target configured: run pytest inside `jmp shell` "
    "(e.g. `jmp shell --exporter-config exporter.yaml -- pytest`), or pass --jmp-exporter-config FILE "
    "(local), --jmp-direct HOST:PORT (direct) or --jmp-client ALIAS --jmp-selector K=V (distributed); "
    "the same settings work as pytest ini keys (jmp_exporter_config, ...) and environment variables "
    "(JMP_EXPORTER_CONFIG, ...)"
)


@dataclass(frozen=True, slots=True)
class ShellSpec:
    """The exporter of the surrounding `jmp shell` (or hook)."""

    host: str
    source: str = "JUMPSTARTER_HOST"

    def describe(self) -> str:
        """One line for headers and messages."""
        return f"the exporter of the surrounding jmp shell ({self.host})"


@dataclass(frozen=True, slots=True)
class LocalSpec:
    """An exporter config served in-process for the session."""

    config: Path
    run_hooks: bool = False
    source: str = ""

    def describe(self) -> str:
        """One line for headers and messages."""
        return f"local exporter config {self.config} (from {self.source})"


@dataclass(frozen=True, slots=True)
class DirectSpec:
    """A direct-mode exporter reached over TCP."""

    address: str
    passphrase: str | None = None
    accept_fingerprint: str | None = None
    tls_ca: Path | None = None
    insecure: bool = False
    source: str = ""

    def describe(self) -> str:
        """One line for headers and messages."""
        return f"direct-mode exporter {self.address} (from {self.source})"


@dataclass(frozen=True, slots=True)
class LeaseSpec:
    """A device leased through a controller (distributed mode)."""

    client: str | None  # None: the current client config
    selector: str
    duration: str = "30m"
    source: str = ""

    def describe(self) -> str:
        """One line for headers and messages."""
        who = f"client {self.client}" if self.client else "the current client"
        return f"a device leased by {who} with selector {self.selector or '(any)'} (from {self.source})"


TargetSpec = ShellSpec | LocalSpec | DirectSpec | LeaseSpec


@dataclass(frozen=True, slots=True)
class Sources:
    """Raw setting values from each source (None or missing: not given)."""

    cli: Mapping[str, Any]
    env: Mapping[str, str]
    ini: Mapping[str, Any]
    cwd: Path
    ini_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    """What the session drives, and how failure reports show the console."""

    target: TargetSpec | None
    console: str | None = None
    console_lines: int = 50


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != ()


def _level(sources: Sources, level: str) -> dict[str, tuple[Any, str]]:
    """name -> (value, description of where it came from) for one source."""
    found: dict[str, tuple[Any, str]] = {}
    for s in SETTINGS:
        if level == "cli":
            value, origin = sources.cli.get(s.name), s.flag
        elif level == "env":
            value, origin = (sources.env.get(s.env) if s.env else None), f"${s.env}"
        else:
            value, origin = sources.ini.get(s.ini), f"ini key {s.ini}"
        if _present(value):
            found[s.name] = (_convert(s, value, level, sources, origin), origin)
    return found


def _convert(s: Setting, value: Any, level: str, sources: Sources, origin: str) -> Any:
    base = sources.ini_dir if level == "ini" and sources.ini_dir is not None else sources.cwd
    if s.kind == "path":
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else base / path
    if s.kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigurationError(f"{origin}: expected true or false, got {value!r}")
    if s.kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{origin}: expected a whole number, got {value!r}") from None
    if s.kind == "list":
        items = value if isinstance(value, list | tuple) else [value]
        terms = [t.strip() for item in items for t in str(item).replace("\n", ",").split(",") if t.strip()]
        return ",".join(terms)
    return str(value)


def _mode_of(level: dict[str, tuple[Any, str]]) -> str | None:
    modes = [mode for mode, keys in MODE_KEYS.items() if any(k in level for k in keys)]
    if len(modes) > 1:
        named = ", ".join(level[k][1] for mode in modes for k in MODE_KEYS[mode] if k in level)
        raise ConfigurationError(f"conflicting Jumpstarter targets: {named}; give only one kind of target")
    return modes[0] if modes else None


def resolve(sources: Sources) -> Resolved:
    """Resolve the session's target; raises `ConfigurationError` for contradictory settings."""
    levels = {name: _level(sources, name) for name in ("cli", "env", "ini")}
    merged: dict[str, tuple[Any, str]] = {}
    for name in ("ini", "env", "cli"):  # later (higher) sources win key by key
        merged.update(levels[name])

    def get(key: str) -> Any:
        return merged[key][0] if key in merged else BY_NAME[key].default

    target: TargetSpec | None = None
    for name in ("cli", "shell", "env", "ini"):
        if name == "shell":
            host = sources.env.get(HOST_ENV)
            if host:
                target = ShellSpec(host)
                break
            continue
        mode = _mode_of(levels[name])
        if mode is None:
            continue
        origin = " and ".join(levels[name][k][1] for k in MODE_KEYS[mode] if k in levels[name])
        if mode == "local":
            target = LocalSpec(get("exporter_config"), run_hooks=bool(get("run_hooks")), source=origin)
        elif mode == "direct":
            target = DirectSpec(
                get("direct"),
                passphrase=get("passphrase"),
                accept_fingerprint=get("accept_fingerprint"),
                tls_ca=get("tls_ca"),
                insecure=bool(get("insecure")),
                source=origin,
            )
        else:
            target = LeaseSpec(get("client"), get("selector") or "", duration=str(get("lease_duration")), source=origin)
        break
    lines = int(get("console_lines"))
    if lines < 1:
        raise ConfigurationError(f"{merged['console_lines'][1]}: must be at least 1")
    return Resolved(target=target, console=get("console"), console_lines=lines)
