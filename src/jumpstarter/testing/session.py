"""`JumpstarterSession`: an open target plus what failure reports and JUnit XML need from it."""

from __future__ import annotations

import json
import logging
import os
from contextlib import ExitStack
from typing import Any

from jumpstarter.testing.capture import ConsoleTap, LogCapture
from jumpstarter.testing.leasing import Worker
from jumpstarter.testing.settings import Resolved, TargetSpec
from jumpstarter.testing.targets import Connected, open_target

#: Logger the client's `log_stream()` re-logs exporter records under (`exporter.<source>`).
EXPORTER_LOGGER = "exporter"
METHODS_LABEL = "jumpstarter.dev/methods"


def find_driver(root: Any, name: str) -> Any:
    """The client of the driver at dotted path `name` (`power`, `qemu.console`) below `root`."""
    node, walked = root, list[str]()
    for part in name.split("."):
        children = getattr(node, "children", None) or {}
        if part not in children:
            where = ".".join(walked) or "the exporter"
            have = ", ".join(sorted(children)) or "no drivers"
            raise LookupError(f"no driver named {name!r}: {where} has {have}")
        node = children[part]
        walked.append(part)
    return node


class _Tee(logging.Filter):
    """A filter on the `exporter.*` loggers: hands every record to the capture, and lets through
    (to pytest's log capture, the terminal, ...) only those at or above the level set before."""

    def __init__(self, capture: LogCapture, threshold: int) -> None:
        super().__init__()
        self.capture = capture
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        self.capture.handle(record)
        return record.levelno >= self.threshold


class JumpstarterSession:
    """The target of a test session (or of one `JumpstarterTest` class), open until closed."""

    def __init__(self, connected: Connected, resolved: Resolved, stack: ExitStack) -> None:
        self.connected = connected
        self.resolved = resolved
        self._stack = stack
        self.capture = LogCapture()
        self.tap: ConsoleTap | None = None
        self.console: Any = None
        self.console_problem: str | None = None

    @classmethod
    def open(cls, target: TargetSpec, resolved: Resolved, worker: Worker | None = None) -> JumpstarterSession:
        """Open `target`, start capturing its logs and make `env()` inside the tests reach it."""
        stack = ExitStack()
        try:
            connected = stack.enter_context(open_target(target, worker))
            session = cls(connected, resolved, stack)
            session._capture_logs()
            session._export_environment()
            session._tap_console()
            return session
        except BaseException:
            stack.close()
            raise

    # ---- what tests use ------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The root client of the exporter's driver tree."""
        return self.connected.client

    def driver(self, name: str) -> Any:
        """The client of one driver, by dotted name."""
        return find_driver(self.client, name)

    def metadata(self) -> Any:
        """Name, labels and lease of the exporter (as `env_with_metadata()` gives them)."""
        from jumpstarter.utils.env import ExporterMetadata

        c = self.connected
        return ExporterMetadata(name=c.exporter, labels=dict(c.labels), lease=c.lease)

    def close(self) -> None:
        """Release everything (the lease, the in-process exporter, the environment)."""
        self._stack.close()

    # ---- what reports use ----------------------------------------------------------------
    def properties(self) -> list[tuple[str, str]]:
        """JUnit XML properties naming the target."""
        c = self.connected
        props = [
            ("jumpstarter_mode", c.mode),
            ("jumpstarter_exporter", c.exporter),
            ("jumpstarter_labels", ",".join(f"{k}={v}" for k, v in sorted(c.labels.items()))),
        ]
        if c.lease:
            props.append(("jumpstarter_lease", c.lease))
        return props

    def failure_sections(self, mark: int, when: str) -> list[tuple[str, str]]:
        """Report sections for a failure: exporter log lines after `mark`, and the console tail."""
        self.capture.settle()
        sections = []
        lines = self.capture.since(mark)
        if lines:
            sections.append((f"Captured log {when} (jumpstarter exporter {self.connected.exporter})", "\n".join(lines)))
        console = self.console_text()
        if console:
            sections.append((f"Captured log {when} (jumpstarter console {self.resolved.console})", console))
        return sections

    def console_text(self) -> str | None:
        """Recent output of the console driver named by `jmp_console` (None when there is none)."""
        if self.console_problem:
            return self.console_problem
        if self.console is None:
            return None
        lines = self.resolved.console_lines
        methods = json.loads(self.console.labels.get(METHODS_LABEL) or "{}")
        if "console_tail" in methods:  # the driver keeps its own log (QEMU does): complete, even unread output
            try:
                return str(self.console.call("console_tail", lines))
            except Exception as exc:
                return f"(console_tail failed: {exc})"
        assert self.tap is not None
        return self.tap.tail(lines) or "(no console output received during the session)"

    # ---- set-up --------------------------------------------------------------------------
    def _capture_logs(self) -> None:
        from jumpstarter.client.logs import SOURCE_NAMES

        parent = logging.getLogger(EXPORTER_LOGGER)
        saved_level = parent.level
        tee = _Tee(self.capture, parent.getEffectiveLevel())
        children = [logging.getLogger(f"{EXPORTER_LOGGER}.{name}") for name in sorted(set(SOURCE_NAMES.values()))]
        for child in children:
            child.addFilter(tee)
        parent.setLevel(logging.DEBUG)  # every record reaches the tee; others see what they saw before

        def restore() -> None:
            for child in children:
                child.removeFilter(tee)
            parent.setLevel(saved_level)

        self._stack.callback(restore)
        self._stack.enter_context(self.client.log_stream(show_all=True))

    def _export_environment(self) -> None:
        saved = {key: os.environ.get(key) for key in self.connected.env}
        os.environ.update(self.connected.env)

        def restore() -> None:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

        self._stack.callback(restore)

    def _tap_console(self) -> None:
        name = self.resolved.console
        if not name:
            return
        try:
            self.console = self.driver(name)
        except LookupError as exc:
            self.console_problem = f"(jmp_console: {exc})"
            return
        self.tap = ConsoleTap()
        self.tap.attach(self.console)
