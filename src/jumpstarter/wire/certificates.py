"""Making X.509 certificates, the one way the project does it: EC P-256 keys, SHA-256 signatures,
random serial numbers, valid from five minutes ago (clocks drift) until a given time.

Used for direct mode's self-signed exporter certificate (`direct.tls`), the router certificates
the controller signs (`controller.routers`) and the session CA with its certificates
(`controller.session_certs`); each says what its certificates are for through their extensions.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

#: How far back a new certificate is valid from (a peer's clock may be behind).
BACKDATE = datetime.timedelta(minutes=5)


def new_key() -> Any:
    """A new EC P-256 private key."""
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: Any) -> bytes:
    """A private key as unencrypted PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization

    encoding, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, pkcs8, serialization.NoEncryption())


def public_pem(key: Any) -> bytes:
    """The public half of a private key, as PEM."""
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def name(common_name: str) -> Any:
    """An X.509 name holding just a common name."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def alt_names(hosts: Iterable[str]) -> list[Any]:
    """Subject alternative names for hosts: IP addresses as such, anything else as DNS names
    (each once, in order)."""
    from cryptography import x509

    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def sign(
    subject: Any,
    public_key: Any,
    *,
    issuer: Any,
    signing_key: Any,
    until: datetime.datetime,
    extensions: Sequence[tuple[Any, bool]],
) -> Any:
    """A certificate for `public_key` named `subject`, signed by `signing_key` as `issuer`, valid
    until `until`, with `extensions` as (extension, critical) pairs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(until)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signing_key, hashes.SHA256())


def pem(certificate: Any) -> bytes:
    """A certificate as PEM."""
    from cryptography.hazmat.primitives import serialization

    result: bytes = certificate.public_bytes(serialization.Encoding.PEM)
    return result
