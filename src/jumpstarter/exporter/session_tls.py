"""The exporter's end of end-to-end TLS sessions: server credentials from the certificate the
controller issued, and the check that a TLS caller holds the exporter's current lease.

Calls over TLS carry the client's certificate, whose common name names the lease it was issued
for (`lease:<namespace>/<name>`); only the lease the exporter is serving now may call. Calls
without a certificate (the plaintext session socket) are not this check's business.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import grpc

from jumpstarter.wire.session_tls import IssuedCertificate, lease_common_name

#: The auth-context property holding the peer certificate's common name.
COMMON_NAME = "x509_common_name"


def server_credentials(issued: IssuedCertificate) -> grpc.ServerCredentials:
    """Credentials of a session server that requires a client certificate from the session CA."""
    return grpc.ssl_server_credentials(
        [(issued.key_pem.encode(), issued.certificate_pem.encode())],
        root_certificates=issued.ca_pem.encode(),
        require_client_auth=True,
    )


def certificate_namespace(certificate_pem: str) -> str:
    """The namespace an exporter certificate (`exporter:<namespace>/<name>`) was issued in."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    common_name = str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    return common_name.removeprefix("exporter:").rsplit("/", 1)[0]


class CurrentLeaseOnly(grpc.aio.ServerInterceptor):
    """Refuses TLS calls whose client certificate is not for the exporter's current lease."""

    def __init__(self, namespace: str, current_lease: Callable[[], str]) -> None:
        self.namespace = namespace
        self.current_lease = current_lease  # the lease being served now ("" when none)

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        """The handler, each of its behaviours checking the caller first."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _guarded(handler, self._check)

    async def _check(self, context: grpc.aio.ServicerContext) -> None:
        names = list(context.auth_context().get(COMMON_NAME, ()))
        if not names:
            return  # not a TLS call
        caller = names[0].decode(errors="replace")
        lease = self.current_lease()
        if not lease:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this exporter serves no lease now; the certificate of {caller} is not accepted",
            )
        expected = lease_common_name(self.namespace, lease)
        if caller != expected:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this exporter serves lease {self.namespace}/{lease}: a certificate for {caller} is not accepted",
            )


def _guarded(handler: grpc.RpcMethodHandler, check: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
    """`handler` with `check(context)` awaited before its behaviour runs."""
    kinds = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    for kind, make in kinds.items():
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return make(  # type: ignore[no-any-return]
                _wrap(behaviour, check),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def _wrap(behaviour: Any, check: Callable[[Any], Any]) -> Any:
    if inspect.isasyncgenfunction(behaviour):

        async def streaming(request: Any, context: Any) -> Any:
            await check(context)
            async for item in behaviour(request, context):
                yield item

        return streaming

    async def single(request: Any, context: Any) -> Any:
        await check(context)
        return await behaviour(request, context)

    return single
