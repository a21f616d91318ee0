"""End-to-end TLS sessions on a real exporter session server: certificates from a session CA, the
TLS socket admitting only the current lease's client, the plaintext socket unchanged, and the
client's sidecar file making `Connection` speak TLS."""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2

from jumpstarter.client.session_tls import SessionTLS, read_sidecar, sidecar_path, write_sidecar
from jumpstarter.controller.session_certs import SessionCA
from jumpstarter.exporter.exporter import Exporter
from jumpstarter.exporter.session_tls import CurrentLeaseOnly, certificate_namespace, server_credentials
from jumpstarter.protocol.v1 import jumpstarter_pb2_grpc
from jumpstarter.wire.session_tls import SESSION_SERVER_NAME, IssuedCertificate, new_key_pair
from jumpstarter_driver_power.driver import MockPower

pytestmark = pytest.mark.anyio
LATER = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)


def issue(ca: SessionCA, common_name: str, *, server: bool) -> IssuedCertificate:
    key, public = new_key_pair()
    cert = ca.issue(public, common_name, server=server, valid_until=LATER)
    return IssuedCertificate(key, cert, ca.cert_pem.decode(), exporter_tls=True)


@pytest.fixture
def socket_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="jmp-tls-")  # unix socket paths must stay short
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Served:
    exporter: Exporter
    ca: SessionCA
    plain: str
    tls: str

    def client_tls(self, lease: str) -> SessionTLS:
        issued = issue(self.ca, f"lease:default/{lease}", server=False)
        return SessionTLS(issued.key_pem, issued.certificate_pem, issued.ca_pem)


@pytest.fixture
async def served(tmp_path: Path, socket_dir: str) -> AsyncIterator[Served]:
    ca = SessionCA.load_or_create(tmp_path)
    exporter = Exporter(MockPower())
    plain, tls = os.path.join(socket_dir, "session.sock"), os.path.join(socket_dir, "session-tls.sock")
    issued = issue(ca, "exporter:default/board", server=True)
    guard = CurrentLeaseOnly(certificate_namespace(issued.certificate_pem), lambda: exporter.lease_name)
    async with exporter.serving(plain), exporter.serving_tls(tls, server_credentials(issued), (guard,)):
        assert await exporter.begin_lease("lease-1", "alice")
        yield Served(exporter, ca, plain, tls)


def tls_channel(path: str, tls: SessionTLS | None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca.encode() if tls else None,
        private_key=tls.key.encode() if tls else None,
        certificate_chain=tls.cert.encode() if tls else None,
    )
    return grpc.aio.secure_channel(
        f"unix:{path}", credentials, options=(("grpc.ssl_target_name_override", SESSION_SERVER_NAME),)
    )


async def get_report(channel: grpc.aio.Channel) -> object:
    async with channel:
        return await jumpstarter_pb2_grpc.ExporterServiceStub(channel).GetReport(empty_pb2.Empty(), timeout=10)


async def test_the_current_leases_client_is_served_over_tls(served: Served) -> None:
    report = await get_report(tls_channel(served.tls, served.client_tls("lease-1")))
    assert report.uuid == served.exporter.session.uuid  # type: ignore[attr-defined]


async def test_a_certificate_for_another_lease_is_refused(served: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await get_report(tls_channel(served.tls, served.client_tls("lease-0")))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "serves lease default/lease-1" in (refused.value.details() or "")
    assert "lease:default/lease-0" in (refused.value.details() or "")


async def test_no_lease_no_tls_caller(served: Served) -> None:
    await served.exporter.end_lease()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await get_report(tls_channel(served.tls, served.client_tls("lease-1")))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_a_client_without_a_certificate_fails_the_handshake(served: Served) -> None:
    anonymous = SessionTLS(key="", cert="", ca=served.ca.cert_pem.decode())
    credentials = grpc.ssl_channel_credentials(root_certificates=anonymous.ca.encode())
    channel = grpc.aio.secure_channel(
        f"unix:{served.tls}", credentials, options=(("grpc.ssl_target_name_override", SESSION_SERVER_NAME),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await get_report(channel)
    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_from_another_ca_fails_the_handshake(served: Served, tmp_path: Path) -> None:
    other = SessionCA.load_or_create(tmp_path / "other")
    issued = issue(other, "lease:default/lease-1", server=False)
    forged = SessionTLS(issued.key_pem, issued.certificate_pem, served.ca.cert_pem.decode())
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await get_report(tls_channel(served.tls, forged))
    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_the_plaintext_socket_still_works(served: Served) -> None:
    report = await get_report(grpc.aio.insecure_channel(f"unix:{served.plain}"))
    assert report.uuid == served.exporter.session.uuid  # type: ignore[attr-defined]


async def test_connection_speaks_tls_when_the_socket_has_a_sidecar(served: Served) -> None:
    from jumpstarter.client.client import client_from_path_async

    path = write_sidecar(served.tls, served.client_tls("lease-1"))
    assert path == sidecar_path(served.tls)
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    async with client_from_path_async(served.tls) as client:  # the socket speaks only TLS
        await client.call_async("on")
    assert served.exporter.root.state is True  # type: ignore[attr-defined]


def test_sidecar_round_trip(tmp_path: Path) -> None:
    socket = tmp_path / "lease.sock"
    assert read_sidecar(socket) is None
    tls = SessionTLS("KEY", "CERT", "CA")
    write_sidecar(socket, tls)
    assert read_sidecar(socket) == tls
    assert (tmp_path / "lease.sock.tls").is_file()
    (tmp_path / "lease.sock.tls").write_text("{not json")
    assert read_sidecar(socket) is None


async def test_a_synchronous_connection_speaks_tls_too(served: Served) -> None:
    import anyio

    write_sidecar(served.tls, served.client_tls("lease-1"))

    def switch_off() -> None:
        from anyio.from_thread import start_blocking_portal

        from jumpstarter.client.client import client_from_path

        with start_blocking_portal() as portal, client_from_path(served.tls, portal) as client:
            client.call("off")

    await anyio.to_thread.run_sync(switch_off)
    assert served.exporter.root.state is False  # type: ignore[attr-defined]
