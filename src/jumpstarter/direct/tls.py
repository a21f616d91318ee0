"""Certificates for direct mode: a self-signed exporter certificate, made once and kept, and
SHA-256 fingerprints to pin it on clients."""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

#: Name every self-signed exporter certificate carries; clients verify against it.
EXPORTER_NAME = "jumpstarter-exporter"


@dataclass(slots=True)
class ServerIdentity:
    """An exporter's certificate and key (PEM) and the certificate's fingerprint."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint of the certificate."""
        return fingerprint(self.cert_pem)


def fingerprint(cert_pem: bytes | str) -> str:
    """`SHA256:AA:BB:...` of a PEM certificate (over its DER bytes, as browsers and openssl show)."""
    text = cert_pem.decode() if isinstance(cert_pem, bytes) else cert_pem
    der = ssl.PEM_cert_to_DER_cert(text)
    digest = hashlib.sha256(der).hexdigest().upper()
    return "SHA256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(value: str) -> str:
    """Accept `SHA256:AA:BB..`, `aabb..` or `AA:BB..` and return the canonical form."""
    hexdigits = value.upper().removeprefix("SHA256:").replace(":", "").strip()
    if len(hexdigits) != 64 or any(c not in "0123456789ABCDEF" for c in hexdigits):
        raise ValueError(f"not a SHA-256 fingerprint: {value!r}")
    return "SHA256:" + ":".join(hexdigits[i : i + 2] for i in range(0, 64, 2))


def generate_self_signed(hosts: list[str] | None = None) -> ServerIdentity:
    """A new EC P-256 key and a self-signed certificate valid for ten years."""
    from cryptography import x509

    from jumpstarter.wire import certificates

    key = certificates.new_key()
    names = certificates.alt_names([EXPORTER_NAME, "localhost", *(hosts or []), "127.0.0.1"])
    subject = certificates.name(EXPORTER_NAME)
    cert = certificates.sign(
        subject, key.public_key(), issuer=subject, signing_key=key,
        until=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3650),
        extensions=[(x509.SubjectAlternativeName(names), False),
                    (x509.BasicConstraints(ca=True, path_length=None), True)],
    )  # fmt: skip
    return ServerIdentity(cert_pem=certificates.pem(cert), key_pem=certificates.key_pem(key))


def load_or_create(directory: Path) -> tuple[ServerIdentity, bool]:
    """The identity kept in `directory` (cert.pem, key.pem), created on first use.
    Returns (identity, created)."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.is_file() and key_path.is_file():
        return ServerIdentity(cert_path.read_bytes(), key_path.read_bytes()), False
    identity = generate_self_signed()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_private(key_path, identity.key_pem)
    _write_private(cert_path, identity.cert_pem)
    return identity, True


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
