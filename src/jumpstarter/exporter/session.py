"""A session: one driver tree being served, its status, logs and method dispatch (no gRPC here)."""

from __future__ import annotations

import inspect
import logging
import time
import typing
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import anyio

from jumpstarter.driver.base import Driver
from jumpstarter.driver.decorators import CallKind, call_kind
from jumpstarter.driver.report import DriverReport
from jumpstarter.errors import DriverNotFoundError, ExporterNotReadyError, MethodNotFoundError
from jumpstarter.exporter.logging import LogBroadcaster
from jumpstarter.exporter.status import CALLABLE, ExporterStatus, StatusMachine
from jumpstarter.wire.values import to_type

log = logging.getLogger("jumpstarter.exporter.session")


#: A sync method that finished within this many seconds on each of its first INLINE_AFTER runs
#: (in a worker thread) is then run directly on the event loop, saving two thread hops per call.
#: One run slower than INLINE_BUDGET sends it back to worker threads for good.
INLINE_BUDGET = 0.002
INLINE_AFTER = 3
#: Names whose presence in a method's code means it needs a worker thread (it calls back into
#: the event loop), so it is never run inline.
NEEDS_THREAD = frozenset({"from_thread", "portal", "run_sync", "BlockingPortal", "start_blocking_portal"})


@dataclass(slots=True)
class Method:
    """An exported method bound to its driver instance, ready to dispatch."""

    func: Callable[..., Any]
    kind: CallKind
    is_async: bool
    coerce: tuple[Any, ...] | None  # per-positional-argument annotations, None: no coercion
    fast_runs: int = 0  # consecutive quick runs of a sync method; -1: always use a thread

    def convert_args(self, args: list[Any]) -> list[Any]:
        """Give arguments the types the method declares (models, dataclasses, bytes, ints)."""
        if not self.coerce:
            return args
        return [to_type(arg, self.coerce[i]) if i < len(self.coerce) else arg for i, arg in enumerate(args)]


def _annotations(func: Callable[..., Any]) -> tuple[Any, ...] | None:
    try:
        hints = typing.get_type_hints(func)
        params = [
            p
            for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except Exception:  # unresolvable forward references: pass arguments through unchanged
        return None
    found = tuple(hints.get(p.name, Any) for p in params)
    return found if any(isinstance(a, type) for a in found) else None


class Session:
    """Serves one driver tree: reports, method lookup, status and log fan-out."""

    def __init__(self, root: Driver, *, labels: dict[str, str] | None = None, motd: str = "") -> None:
        self.root = root
        self.uuid = str(root.uuid)
        self.labels = dict(labels or {})
        self.motd = motd
        self.drivers: dict[str, Driver] = {}
        self.reports: list[DriverReport] = []
        for driver, parent, name in root.enumerate():
            self.drivers[str(driver.uuid)] = driver
            self.reports.append(driver.report(parent, name))
        self.status = StatusMachine()
        self.logs = LogBroadcaster(self.drivers.keys())
        self._methods: dict[tuple[str, str], Method] = {}
        self.session_id = str(uuid4())

    # ---- lifecycle -----------------------------------------------------------------------
    async def reset_drivers(self) -> None:
        """Call every driver's `reset()` (parents first)."""
        for driver in self.drivers.values():
            await _maybe_await(driver.reset())

    async def close_drivers(self) -> None:
        """Call every driver's `close()` (parents first); one failing does not stop the rest."""
        for driver in self.drivers.values():
            try:
                await _maybe_await(driver.close())
            except Exception:
                log.exception("closing driver %s failed", type(driver).__name__)

    def install_log_handler(self) -> None:
        """Start forwarding log records to LogStream subscribers."""
        root = logging.getLogger()
        if self.logs not in root.handlers:
            root.addHandler(self.logs)

    def remove_log_handler(self) -> None:
        """Stop forwarding log records."""
        logging.getLogger().removeHandler(self.logs)

    # ---- dispatch ------------------------------------------------------------------------
    def check_callable(self, allowed: frozenset[ExporterStatus] = CALLABLE) -> None:
        """Raise `ExporterNotReadyError` unless the status is one of `allowed`."""
        status = self.status.status
        if status not in allowed:
            raise ExporterNotReadyError(
                f"exporter is {status.name}, driver calls are accepted only when the lease is ready"
            )

    def method(self, uuid: str, name: str, kind: CallKind) -> Method:
        """Look up an exported method of kind `kind` on driver `uuid`."""
        key = (uuid, name)
        found = self._methods.get(key)
        if found is None:
            found = self._resolve(uuid, name)
            self._methods[key] = found
        if found.kind is not kind:
            hint = {CallKind.UNARY: "call()", CallKind.STREAMING: "streamingcall()", CallKind.STREAM: "stream()"}
            raise MethodNotFoundError(
                f"method {name!r} of {type(self.drivers[uuid]).__name__} is a {found.kind.value} method; "
                f"use {hint[found.kind]}"
            )
        return found

    def _resolve(self, uuid: str, name: str) -> Method:
        driver = self.drivers.get(uuid)
        if driver is None:
            raise DriverNotFoundError(f"no driver instance with uuid {uuid} on this exporter")
        func = getattr(driver, name, None) if not name.startswith("_") else None
        kind = call_kind(func)
        if func is None or kind is None:
            raise MethodNotFoundError(f"{type(driver).__name__} has no exported method {name!r}")
        is_async = inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)
        method = Method(func=func, kind=kind, is_async=is_async, coerce=_annotations(func))
        code = getattr(inspect.unwrap(func), "__code__", None)
        if code is None or NEEDS_THREAD & set(code.co_names):
            method.fast_runs = -1
        return method

    async def call(self, uuid: str, name: str, args: list[Any], allowed: frozenset[ExporterStatus] = CALLABLE) -> Any:
        """Run a unary driver call."""
        self.check_callable(allowed)
        method = self.method(uuid, name, CallKind.UNARY)
        args = method.convert_args(args)
        if method.is_async:
            return await method.func(*args)
        if method.fast_runs >= INLINE_AFTER:
            start = time.perf_counter()
            result = method.func(*args)
            if time.perf_counter() - start > INLINE_BUDGET:
                method.fast_runs = -1
                log.debug("%s blocked the event loop; running it in worker threads from now on", method.func)
        else:
            result, took = await anyio.to_thread.run_sync(_timed_call, method.func, args)
            if method.fast_runs >= 0:
                method.fast_runs = method.fast_runs + 1 if took <= INLINE_BUDGET else -1
        if inspect.isawaitable(result):
            result = await result
        return result

    async def streaming_call(
        self, uuid: str, name: str, args: list[Any], allowed: frozenset[ExporterStatus] = CALLABLE
    ) -> AsyncIterator[Any]:
        """Run a server-streaming driver call, yielding its items."""
        self.check_callable(allowed)
        method = self.method(uuid, name, CallKind.STREAMING)
        args = method.convert_args(args)
        if method.is_async:
            async for item in method.func(*args):
                yield item
            return
        generator = await anyio.to_thread.run_sync(_call_sync, method.func, args)
        done = object()
        try:
            while True:
                item = await anyio.to_thread.run_sync(next, generator, done)
                if item is done:
                    return
                yield item
        finally:
            generator.close()

    def stream(
        self, uuid: str, name: str, args: list[Any] | None = None, allowed: frozenset[ExporterStatus] = CALLABLE
    ) -> Any:
        """The async context manager of an `@exportstream` method."""
        self.check_callable(allowed)
        method = self.method(uuid, name, CallKind.STREAM)
        return method.func(*(args or []))


def _call_sync(func: Callable[..., Any], args: list[Any]) -> Any:
    return func(*args)


def _timed_call(func: Callable[..., Any], args: list[Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = func(*args)
    return result, time.perf_counter() - start


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
