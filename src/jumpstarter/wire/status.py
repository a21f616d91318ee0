"""The one table mapping exceptions to gRPC status codes, used by servers and clients alike.

A server turns an exception into (status code, message, `x-jmp-error` type name); a client turns
that back into an exception of the same type when it can, and of the table's type for the status
code otherwise (which is what upstream peers, who send no type name, get).
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

from jumpstarter import errors

#: Trailing-metadata key naming the exception type raised on the exporter.
ERROR_TYPE_KEY = "x-jmp-error"

#: (exception type, gRPC status code name). First isinstance match wins, so specific types come
#: before their bases. The client rebuilds the *first* type listed for a code when the peer did not
#: name a type.
STATUS_TABLE: tuple[tuple[type[BaseException], str], ...] = (
    (errors.DriverNotFoundError, "NOT_FOUND"),
    (errors.MethodNotFoundError, "NOT_FOUND"),
    (errors.NotFoundError, "NOT_FOUND"),
    (errors.AlreadyExistsError, "ALREADY_EXISTS"),
    (errors.ArgumentError, "INVALID_ARGUMENT"),
    (errors.ExporterNotReadyError, "FAILED_PRECONDITION"),
    (errors.LeaseEndedError, "FAILED_PRECONDITION"),
    (errors.ExporterBusyError, "RESOURCE_EXHAUSTED"),
    (errors.UnauthenticatedError, "UNAUTHENTICATED"),
    (errors.PermissionDeniedError, "PERMISSION_DENIED"),
    (errors.StreamClosedError, "ABORTED"),
    (errors.ConnectionLostError, "UNAVAILABLE"),
    (NotImplementedError, "UNIMPLEMENTED"),
    (TimeoutError, "DEADLINE_EXCEEDED"),
    (FileNotFoundError, "NOT_FOUND"),
    (PermissionError, "PERMISSION_DENIED"),
    (ConnectionError, "UNAVAILABLE"),
    (ValueError, "INVALID_ARGUMENT"),
    (TypeError, "INVALID_ARGUMENT"),
    (OSError, "INTERNAL"),
    (errors.DriverError, "UNKNOWN"),
)

_DEFAULT_CODE = "UNKNOWN"

#: Code name -> exception type rebuilt when the peer named no type.
_BY_CODE: dict[str, type[BaseException]] = {}
for _exc, _code in STATUS_TABLE:
    _BY_CODE.setdefault(_code, _exc)
_BY_CODE["UNKNOWN"] = errors.RemoteError
_BY_CODE["CANCELLED"] = errors.ConnectionLostError
_BY_CODE["INTERNAL"] = errors.RemoteError


def code_for(exc: BaseException) -> str:
    """The gRPC status code name for an exception."""
    for exc_type, code in STATUS_TABLE:
        if isinstance(exc, exc_type):
            return code
    return _DEFAULT_CODE


def type_name(exc: BaseException) -> str:
    """The name sent in `x-jmp-error`: `module:qualname` (`builtins:ValueError`)."""
    cls = type(exc)
    return f"{cls.__module__}:{cls.__qualname__}"


def message_for(exc: BaseException) -> str:
    """The status details text for an exception."""
    text = str(exc)
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    return text or type(exc).__name__


def rebuild(code: str, message: str, remote_type: str | None) -> BaseException:
    """Rebuild the exception a peer reported with (code, message, optional type name)."""
    if remote_type:
        cls = _resolve(remote_type)
        if cls is not None:
            try:
                return cls(message)
            except Exception:  # an exception type whose constructor wants more than a message
                pass
        fallback = _BY_CODE.get(code, errors.RemoteError)
        if fallback is errors.RemoteError:
            return errors.RemoteError(f"{remote_type.replace(':', '.')}: {message}", remote_type)
        return _construct(fallback, message)
    return _construct(_BY_CODE.get(code, errors.RemoteError), message)


def _construct(cls: type[BaseException], message: str) -> BaseException:
    if cls is errors.RemoteError:
        return errors.RemoteError(message)
    return cls(message)


def _resolve(name: str) -> type[BaseException] | None:
    module_name, _, qualname = name.partition(":")
    if module_name == "builtins":
        cls: Any = getattr(builtins, qualname, None)
        return cls if isinstance(cls, type) and issubclass(cls, Exception) else None
    module = sys.modules.get(module_name)  # never import on a peer's say-so
    cls = module
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
    if isinstance(cls, type) and issubclass(cls, errors.JumpstarterError):
        return cls
    return None
