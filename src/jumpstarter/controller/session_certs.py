"""Certificates for end-to-end TLS sessions between clients and exporters, through routers.

The controller keeps a session CA of its own (EC P-256, `session-ca.crt` + `session-ca.key` in its
data directory, made on first start and kept), independent of its TLS certificate. An exporter
gets a server certificate for the fixed name `exporter.jumpstarter.invalid`, which clients verify;
a client gets a client certificate naming one lease it holds (`lease:<namespace>/<name>`), valid
for at least `CLIENT_VALIDITY` (longer for a lease ending later): a lease may be extended, and the
exporter refuses the certificate once its lease is not the current one anyway. An exporter
serving TLS sessions admits only the certificate of its current lease, so a router in the middle
sees ciphertext and cannot impersonate either end.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from jumpstarter import errors
from jumpstarter.controller.model import Kind
from jumpstarter.controller.service import Authenticator, unary
from jumpstarter.protocol.admin.v1 import sessions_pb2, sessions_pb2_grpc
from jumpstarter.wire import certificates
from jumpstarter.wire.session_tls import SESSION_SERVER_NAME, lease_common_name

log = logging.getLogger("jumpstarter.controller")
CA_CERT_FILE, CA_KEY_FILE = "session-ca.crt", "session-ca.key"
EXPORTER_VALIDITY = datetime.timedelta(days=365)
#: Shortest validity of a client certificate (before the margin): the certificate is issued once
#: per `jmp shell`, and the lease it names may be extended (`jmp update lease`) well past its end.
CLIENT_VALIDITY = datetime.timedelta(days=30)
#: Added to the end of a lease: clocks drift, and a lease may be extended.
LEASE_MARGIN = datetime.timedelta(hours=1)
CA_VALIDITY = datetime.timedelta(days=3650)


@dataclass(slots=True, frozen=True)
class SessionCA:
    """The session CA's certificate and key (PEM)."""

    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SessionCA:
        """The CA kept in `data_dir`, made there (key mode 0600) on first use."""
        from jumpstarter.config.paths import SECRET_MODE, atomic_write

        cert_path, key_path = data_dir / CA_CERT_FILE, data_dir / CA_KEY_FILE
        if cert_path.is_file() and key_path.is_file():
            return cls(cert_path.read_bytes(), key_path.read_bytes())
        ca = _new_ca()
        atomic_write(key_path, ca.key_pem.decode(), SECRET_MODE)
        atomic_write(cert_path, ca.cert_pem.decode())
        log.info("made a new session CA in %s", data_dir)
        return ca

    def issue(self, public_key_pem: str, common_name: str, *, server: bool, valid_until: datetime.datetime) -> str:
        """A leaf certificate for `public_key_pem`: a server one (for SESSION_SERVER_NAME) or a client one."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID

        ca_cert = x509.load_pem_x509_certificate(self.cert_pem)
        ca_key: Any = serialization.load_pem_private_key(self.key_pem, password=None)
        try:
            public: Any = serialization.load_pem_public_key(public_key_pem.encode())
        except (ValueError, TypeError) as exc:
            raise errors.ArgumentError(f"public_key_pem is not a PEM public key: {exc}") from None
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        extensions: list[tuple[Any, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(cert_sign=False), True),
            (x509.ExtendedKeyUsage([usage]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
        ]
        if server:
            extensions.append((x509.SubjectAlternativeName([x509.DNSName(SESSION_SERVER_NAME)]), False))
        now = datetime.datetime.now(datetime.UTC)
        cert = certificates.sign(
            certificates.name(common_name), public, issuer=ca_cert.subject, signing_key=ca_key,
            until=max(valid_until, now + LEASE_MARGIN), extensions=extensions,
        )
        return certificates.pem(cert).decode()


def _key_usage(*, cert_sign: bool) -> Any:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _new_ca() -> SessionCA:
    from cryptography import x509

    key = certificates.new_key()
    subject = certificates.name("jumpstarter session CA")
    cert = certificates.sign(
        subject, key.public_key(), issuer=subject, signing_key=key,
        until=datetime.datetime.now(datetime.UTC) + CA_VALIDITY,
        extensions=[(x509.BasicConstraints(ca=True, path_length=0), True),
                    (_key_usage(cert_sign=True), True),
                    (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)],
    )  # fmt: skip
    return SessionCA(certificates.pem(cert), certificates.key_pem(key))


class SessionCertificateServicer(sessions_pb2_grpc.SessionCertificateServiceServicer):
    """Issues session certificates: server ones to exporters, per-lease client ones to clients."""

    def __init__(self, ca: SessionCA, auth: Authenticator, coordinator: Any) -> None:
        self.ca = ca
        self.auth = auth
        self.coordinator = coordinator
        #: (namespace, name) of exporters issued a certificate since this controller started: they
        #: serve TLS sessions (an exporter that never asked, e.g. an upstream one, does not)
        self.tls_exporters: set[tuple[str, str]] = set()

    @unary
    async def IssueSessionCertificate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = self.auth(context, Kind.EXPORTER, Kind.CLIENT)
        now = datetime.datetime.now(datetime.UTC)
        ca_pem = self.ca.cert_pem.decode()
        if who.kind is Kind.EXPORTER:
            name = f"exporter:{who.namespace}/{who.name}"
            cert = self.ca.issue(request.public_key_pem, name, server=True, valid_until=now + EXPORTER_VALIDITY)
            self.tls_exporters.add((who.namespace, who.name))
            log.info("issued a session certificate to exporter %s/%s", who.namespace, who.name)
            return sessions_pb2.SessionCertificate(certificate_pem=cert, ca_pem=ca_pem)
        if not request.lease_name:
            raise errors.ArgumentError("a client session certificate is for a lease: name it (lease_name)")
        client = self.coordinator.get_identity(Kind.CLIENT, who.namespace, who.name)
        lease = self.coordinator.get_lease(client, who.namespace, request.lease_name)
        if not lease.active:
            raise errors.LeaseEndedError(f"lease {request.lease_name} has ended ({lease.reason or lease.phase.value})")
        end = now + CLIENT_VALIDITY
        if lease.effective_end is not None:
            end = max(end, datetime.datetime.fromtimestamp(lease.effective_end, datetime.UTC))
        name = lease_common_name(lease.namespace, lease.name)
        cert = self.ca.issue(request.public_key_pem, name, server=False, valid_until=end + LEASE_MARGIN)
        exporter_tls = lease.exporter is not None and (lease.namespace, lease.exporter) in self.tls_exporters
        return sessions_pb2.SessionCertificate(certificate_pem=cert, ca_pem=ca_pem, exporter_tls=exporter_tls)
