"""Client-side handling of gRPC call outcomes: metadata we send, errors we rebuild."""

from __future__ import annotations

from typing import Any

from jumpstarter.wire import status

#: Metadata sent with every driver call (the tagged dialect is announced in the user agent).
CALL_METADATA: tuple[tuple[str, str], ...] = ()


def error_from_rpc(exc: BaseException) -> BaseException | None:
    """Translate a grpc.RpcError (sync or aio) into the exception the driver raised; None if
    `exc` is not an RPC error."""
    import grpc

    if not isinstance(exc, grpc.RpcError):
        return None
    rpc: Any = exc
    try:
        code = rpc.code()
        details = rpc.details() or ""
        trailing = rpc.trailing_metadata() or ()
    except Exception:
        return None
    remote_type = None
    for key, value in trailing:
        if key == status.ERROR_TYPE_KEY:
            remote_type = value
    code_name = code.name if code is not None else "UNKNOWN"
    if remote_type is None and code_name == "UNAVAILABLE":
        from jumpstarter.errors import ConnectionLostError

        return ConnectionLostError(f"connection to the exporter lost: {details}")
    if remote_type is None and code_name == "CANCELLED":
        from jumpstarter.errors import ConnectionLostError

        return ConnectionLostError(f"call cancelled: {details}")
    if remote_type is None and code_name == "RESOURCE_EXHAUSTED":
        from jumpstarter.errors import RemoteError

        return RemoteError(f"resource exhausted: {details}")  # gRPC's own limit, not a busy exporter
    return status.rebuild(code_name, details, remote_type)
