"""Client side of direct mode: how to trust an exporter's certificate and what to send it."""

from __future__ import annotations

import getpass
import os
import socket
import ssl
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jumpstarter.errors import ConfigurationError, ConnectionLostError, JumpstarterError

PASSPHRASE_KEY = "x-jumpstarter-passphrase"
CLIENT_ID_KEY = "x-jmp-client-id"
CLIENT_NAME_KEY = "x-jmp-client-name"
EXPORTER_NAME = "jumpstarter-exporter"


class CertificateMismatchError(JumpstarterError):
    """The exporter presented a certificate other than the one pinned or expected."""


class UntrustedCertificateError(JumpstarterError):
    """The exporter's certificate is not trusted yet (trust on first use needs confirmation)."""


@dataclass(slots=True)
class DirectTarget:
    """Everything needed to reach a direct-mode exporter."""

    address: str
    passphrase: str | None = None
    insecure: bool = False  # plain TCP
    ca_file: str | None = None
    accept_fingerprint: str | None = None
    client_id: str = field(default_factory=lambda: os.environ.get("JMP_CLIENT_ID") or str(uuid.uuid4()))
    client_name: str = field(default_factory=lambda: f"{getpass.getuser()}@{socket.gethostname()}")

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata sent with every call."""
        items = [(CLIENT_ID_KEY, self.client_id), (CLIENT_NAME_KEY, self.client_name)]
        if self.passphrase:
            items.append((PASSPHRASE_KEY, self.passphrase))
        return tuple(items)

    def environment(self, exporter_name: str) -> dict[str, str]:
        """What processes started for a session with this exporter (a shell's command, a test's
        subprocess) need to reach it as the same client (`j`, `env()` read these)."""
        env = {
            "JUMPSTARTER_HOST": self.address,
            "JMP_DRIVERS_ALLOW": "UNSAFE",
            "JMP_EXPORTER": exporter_name,
            # the same client id: the exporter lets this session's other connections in
            "JMP_CLIENT_ID": self.client_id,
        }
        if self.passphrase:
            env["JMP_GRPC_PASSPHRASE"] = self.passphrase
        if self.insecure:
            env["JMP_GRPC_INSECURE"] = "1"
        if self.ca_file:
            env["JMP_TLS_CA"] = self.ca_file
        return env


def split_address(address: str) -> tuple[str, int]:
    """`host:port` -> (host, port) with a clear error for anything else."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigurationError(f"{address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def known_exporters_path() -> Path:
    """Where pinned exporter fingerprints are remembered."""
    from jumpstarter.config.paths import config_home

    return config_home() / "known_exporters.yaml"


def load_known() -> dict[str, str]:
    """address -> pinned fingerprint."""
    import yaml

    path = known_exporters_path()
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def remember(address: str, fingerprint: str) -> None:
    """Pin `fingerprint` for `address`."""
    import yaml

    from jumpstarter.config.paths import atomic_write

    known = load_known()
    known[address] = fingerprint
    path = known_exporters_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, yaml.safe_dump(known, sort_keys=True), mode=0o600)


def fetch_certificate(address: str, timeout: float = 10.0) -> str:
    """The PEM certificate the exporter at `address` presents (not verified: for pinning)."""
    host, port = split_address(address)
    try:
        return ssl.get_server_certificate((host, port), timeout=timeout)
    except (ConnectionRefusedError, TimeoutError, OSError) as exc:
        raise ConnectionLostError(f"cannot reach exporter at {address}: {exc}") from None


def credentials(target: DirectTarget, interactive: bool | None = None) -> tuple[Any, tuple[tuple[str, Any], ...]]:
    """(grpc channel credentials or None for plain TCP, extra channel options)."""
    import grpc

    from jumpstarter.direct.tls import fingerprint, normalize_fingerprint

    if target.insecure:
        return None, ()
    if target.ca_file:
        return grpc.ssl_channel_credentials(root_certificates=Path(target.ca_file).read_bytes()), ()
    pem = fetch_certificate(target.address)
    seen = fingerprint(pem)
    name = _pinnable_name(target.address, pem)
    pinned = load_known().get(target.address)
    if pinned is not None and pinned != seen:
        raise CertificateMismatchError(
            f"certificate of {target.address} changed: pinned {pinned}, presented {seen}. If the exporter "
            f"was re-created on purpose, remove {target.address} from {known_exporters_path()}"
        )
    if pinned is None:
        if target.accept_fingerprint:
            wanted = normalize_fingerprint(target.accept_fingerprint)
            if wanted != seen:
                raise CertificateMismatchError(
                    f"certificate of {target.address} does not match: expected {wanted}, presented {seen}"
                )
        elif interactive if interactive is not None else sys.stdin.isatty():
            answer = input(f"Exporter {target.address} presents certificate {seen}.\nTrust it? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise UntrustedCertificateError(f"certificate of {target.address} not trusted")
        else:
            raise UntrustedCertificateError(
                f"certificate of {target.address} is not trusted yet: fingerprint {seen}. Compare it with the "
                f"one `jmp run` printed, then pass --accept-fingerprint {seen}"
            )
        remember(target.address, seen)
    options = (("grpc.ssl_target_name_override", name),)
    return grpc.ssl_channel_credentials(root_certificates=pem.encode()), options


def _pinnable_name(address: str, pem: str) -> str:
    """A name the exporter's self-signed certificate carries (TLS checks one; the trust comes from
    the pinned fingerprint). A CA-issued certificate cannot serve as its own trust root: say so."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem.encode())
    if cert.issuer != cert.subject:
        raise UntrustedCertificateError(
            f"certificate of {address} is issued by {cert.issuer.rfc4514_string()}: verify it with "
            f"--tls-ca FILE (that CA's certificate); fingerprints are pinned for self-signed certificates"
        )
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    return EXPORTER_NAME if EXPORTER_NAME in dns_names or not dns_names else dns_names[0]


def target_from_env(address: str) -> DirectTarget:
    """The direct target a process inside `jmp shell` (or `j`) should use for `address`."""
    return DirectTarget(
        address=address,
        passphrase=os.environ.get("JMP_GRPC_PASSPHRASE") or None,
        insecure=os.environ.get("JMP_GRPC_INSECURE", "") in ("1", "true", "yes"),
        ca_file=os.environ.get("JMP_TLS_CA") or None,
    )
