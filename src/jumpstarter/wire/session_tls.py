"""What clients, exporters and the controller agree on for end-to-end TLS sessions: the name
exporters' certificates carry, the name a client certificate gives its lease, and asking the
controller for a certificate (SessionCertificateService, ours: upstream controllers lack it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

#: The name in every exporter session certificate; clients verify the exporter against it.
SESSION_SERVER_NAME = "exporter.jumpstarter.invalid"


def lease_common_name(namespace: str, lease_name: str) -> str:
    """The common name of the client certificate for a lease."""
    return f"lease:{namespace}/{lease_name}"


@dataclass(slots=True, frozen=True)
class IssuedCertificate:
    """A private key (PEM) and the certificate the controller issued for it."""

    key_pem: str
    certificate_pem: str
    ca_pem: str
    exporter_tls: bool


def new_key_pair() -> tuple[str, str]:
    """A new EC P-256 key: (private PEM, public PEM)."""
    from jumpstarter.wire import certificates

    key = certificates.new_key()
    return certificates.key_pem(key).decode(), certificates.public_pem(key).decode()


async def request_certificate(
    channel: grpc.aio.Channel, metadata: Any, lease_name: str = "", seconds: float = 10.0
) -> IssuedCertificate | None:
    """A fresh key and its session certificate from the controller on `channel` (for `lease_name`
    when a client asks); None when the controller does not issue them (upstream's). Other
    failures raise `grpc.RpcError`."""
    from jumpstarter.protocol.admin.v1 import sessions_pb2, sessions_pb2_grpc

    private, public = new_key_pair()
    stub = sessions_pb2_grpc.SessionCertificateServiceStub(channel)
    request = sessions_pb2.SessionCertificateRequest(public_key_pem=public, lease_name=lease_name)
    try:
        answer = await stub.IssueSessionCertificate(request, metadata=metadata, timeout=seconds)
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
            return None
        raise
    return IssuedCertificate(private, answer.certificate_pem, answer.ca_pem, answer.exporter_tls)
