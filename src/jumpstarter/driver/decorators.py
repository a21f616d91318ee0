"""`@export` and `@exportstream`: mark driver methods as callable from clients."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute set on exported functions; its value is a `CallKind`.
MARKER = "__jumpstarter_export__"


class CallKind(enum.Enum):
    """How an exported method is reached over the wire."""

    UNARY = "unary"  # DriverCall: one request, one result
    STREAMING = "streaming"  # StreamingDriverCall: one request, many results
    STREAM = "stream"  # RouterService.Stream on the session: a bidirectional byte stream


@overload
def export(func: F) -> F: ...
@overload
def export(func: None = None) -> Callable[[F], F]: ...
def export(func: F | None = None) -> F | Callable[[F], F]:
    """Export a driver method: sync or async functions become unary calls, (async) generators
    become server-streaming calls."""

    def mark(f: F) -> F:
        if inspect.isasyncgenfunction(f) or inspect.isgeneratorfunction(f):
            kind = CallKind.STREAMING
        elif callable(f):
            kind = CallKind.UNARY
        else:
            raise TypeError(f"@export needs a function, got {f!r}")
        setattr(f, MARKER, kind)
        return f

    return mark(func) if func is not None else mark


def exportstream(func: F) -> F:
    """Export a method returning an async context manager that yields a byte stream
    (anything with `send(bytes)`, `receive() -> bytes`, `send_eof()` and `aclose()`)."""
    if not callable(func):
        raise TypeError(f"@exportstream needs a function, got {func!r}")
    setattr(func, MARKER, CallKind.STREAM)
    return func


def call_kind(func: object) -> CallKind | None:
    """The `CallKind` a function was exported with, or None when it is not exported."""
    return getattr(func, MARKER, None)
