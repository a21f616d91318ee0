"""Session certificates from a real SessionCertificateService over gRPC: what exporters and
clients get, who is refused, and a session CA that outlives a controller restart."""

from __future__ import annotations

import datetime
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jumpstarter.controller.auth import TokenAuthority
from jumpstarter.controller.coordinator import Coordinator
from jumpstarter.controller.model import Kind, LeasePhase
from jumpstarter.controller.service import Authenticator
from jumpstarter.controller.session_certs import CA_CERT_FILE, CA_KEY_FILE, SessionCA, SessionCertificateServicer
from jumpstarter.controller.store.sqlite import SqliteStore
from jumpstarter.exporter.status import ExporterStatus
from jumpstarter.protocol.admin.v1 import sessions_pb2_grpc
from jumpstarter.wire.session_tls import SESSION_SERVER_NAME, IssuedCertificate, request_certificate

pytestmark = pytest.mark.anyio
NS = "default"


class Lab:
    """A coordinator with exporter `board` online, clients alice and bob, and the servicer on a
    loopback gRPC server."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = SqliteStore.in_directory(tmp_path)
        self.coordinator = Coordinator(self.store, offline_grace=30.0)
        self.authority = TokenAuthority(self.store)
        for kind, name in ((Kind.CLIENT, "alice"), (Kind.CLIENT, "bob"), (Kind.EXPORTER, "board")):
            self.coordinator.create_identity(kind, NS, name, {"site": "lab"} if kind is Kind.EXPORTER else {})
        self.servicer = SessionCertificateServicer(
            SessionCA.load_or_create(tmp_path), Authenticator(self.authority), self.coordinator
        )
        self.server = grpc.aio.server()
        sessions_pb2_grpc.add_SessionCertificateServiceServicer_to_server(self.servicer, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        self.status: Any = self.coordinator.status_stream(NS, "board")

    def metadata(self, kind: Kind, name: str) -> tuple[tuple[str, str], ...]:
        token, _ = self.authority.issue(self.coordinator.get_identity(kind, NS, name))
        return (("authorization", f"Bearer {token}"),)

    async def lease(self) -> str:
        await self.status.__anext__()
        self.coordinator.report_status(NS, "board", ExporterStatus.AVAILABLE, "")
        alice = self.coordinator.get_identity(Kind.CLIENT, NS, "alice")
        lease = self.coordinator.create_lease(alice, "site=lab", 600)
        assert lease.phase is LeasePhase.READY
        return lease.name

    async def issue(self, kind: Kind, name: str, lease: str = "") -> IssuedCertificate:
        issued = await request_certificate(self.channel, self.metadata(kind, name), lease)
        assert issued is not None
        return issued


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    made = Lab(tmp_path)
    await made.server.start()
    yield made
    await made.status.aclose()
    await made.channel.close(None)
    await made.server.stop(None)


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


async def test_an_exporter_gets_a_server_certificate_for_the_fixed_name(lab: Lab) -> None:
    issued = await lab.issue(Kind.EXPORTER, "board")
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert common_name(cert) == "exporter:default/board"
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == [SESSION_SERVER_NAME]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > datetime.timedelta(days=364)
    ca = x509.load_pem_x509_certificate(issued.ca_pem.encode())
    cert.verify_directly_issued_by(ca)
    assert ("default", "board") in lab.servicer.tls_exporters


async def test_a_client_gets_a_certificate_for_its_lease_outliving_extensions(lab: Lab) -> None:
    name = await lab.lease()
    before = await lab.issue(Kind.CLIENT, "alice", name)
    assert before.exporter_tls is False  # the exporter has not asked for its certificate yet
    await lab.issue(Kind.EXPORTER, "board")
    issued = await lab.issue(Kind.CLIENT, "alice", name)
    assert issued.exporter_tls is True
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert common_name(cert) == f"lease:default/{name}"
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    lease = lab.coordinator.get_lease(None, NS, name)
    assert lease.effective_end is not None
    # at least 30 days (the lease may be extended; the exporter admits it only while it is current)
    expected = max(lease.effective_end, cert.not_valid_before_utc.timestamp() + 300 + 30 * 86400) + 3600
    assert abs(cert.not_valid_after_utc.timestamp() - expected) < 2


async def test_a_certificate_for_another_clients_lease_or_no_lease_is_refused(lab: Lab) -> None:
    name = await lab.lease()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await lab.issue(Kind.CLIENT, "bob", name)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "belongs to another client" in (refused.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await lab.issue(Kind.CLIENT, "alice", "no-such-lease")
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as unnamed:
        await lab.issue(Kind.CLIENT, "alice")
    assert unnamed.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_bad_public_key_is_an_invalid_argument(lab: Lab) -> None:
    from jumpstarter.protocol.admin.v1 import sessions_pb2

    stub = sessions_pb2_grpc.SessionCertificateServiceStub(lab.channel)
    request = sessions_pb2.SessionCertificateRequest(public_key_pem="not a key")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.IssueSessionCertificate(request, metadata=lab.metadata(Kind.EXPORTER, "board"))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_the_session_ca_is_kept_across_restarts(tmp_path: Path) -> None:
    first = SessionCA.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / CA_KEY_FILE).stat().st_mode) == 0o600
    assert (tmp_path / CA_CERT_FILE).read_bytes() == first.cert_pem
    assert SessionCA.load_or_create(tmp_path) == first
    ca = x509.load_pem_x509_certificate(first.cert_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


async def test_a_controller_without_the_service_gives_no_certificate() -> None:
    server = grpc.aio.server()  # like upstream's controller: no SessionCertificateService
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await request_certificate(channel, ()) is None
    finally:
        await server.stop(None)
