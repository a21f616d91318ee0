"""Integration tests run the installed `jmp` and `j` programs as real processes.

Each test gets its own config home (`XDG_CONFIG_HOME`) and system directory
(`JMP_SYSTEM_CONFIG_DIR`), `drivers_for_tests` importable through PYTHONPATH, and a short private
directory for unix sockets (socket paths are limited to ~107 bytes, pytest's tmp_path can be longer).
Waits poll a condition against a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

BIN = Path(sys.executable).parent
JMP = str(BIN / "jmp")
J = str(BIN / "j")
HERE = Path(__file__).resolve().parent
LAMP = "drivers_for_tests.Lamp"


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def assert_clean_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A non-zero exit with a message (containing every needle) and no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in stderr:\n{result.stderr}"


@dataclass
class Cli:
    """Runs `jmp` / `j` with a private environment."""

    env: dict[str, str]
    tmp: Path
    sockets: Path

    def jmp(self, *args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run `jmp ARGS...` to completion."""
        return self.run([JMP, *args], timeout=timeout, **kwargs)

    def j(self, *args: str, host: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run `j ARGS...` (with JUMPSTARTER_HOST=`host` when given) to completion."""
        env = dict(self.env)
        if host is not None:
            env["JUMPSTARTER_HOST"] = host
        return self.run([J, *args], timeout=timeout, env=env)

    def run(self, argv: list[str], *, timeout: float = 60, env: dict[str, str] | None = None,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run any program with this environment."""
        if "input" not in kwargs:
            kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(argv, env=env or self.env, capture_output=True, text=True, timeout=timeout, **kwargs)

    @property
    def config_home(self) -> Path:
        """The jumpstarter config home of this environment."""
        return Path(self.env["XDG_CONFIG_HOME"]) / "jumpstarter"

    @property
    def system_dir(self) -> Path:
        """The system-wide config directory of this environment."""
        return Path(self.env["JMP_SYSTEM_CONFIG_DIR"])

    def socket(self, name: str = "exporter.sock") -> Path:
        """A fresh unix socket path."""
        return self.sockets / name

    def exporter_config(self, name: str = "exporter.yaml", *, export: dict[str, Any] | None = None,
                        **fields: Any) -> Path:
        """Write an exporter config with one Lamp (`lamp`, closed marker `<tmp>/closed-<name>`)
        unless `export` is given; `fields` are added at the top level (hooks, motd, ...)."""
        if export is None:
            export = {"lamp": {"type": LAMP, "config": {"closed_marker": str(self.marker(name))}}}
        document = {"apiVersion": "jumpstarter.dev/v1alpha1", "kind": "ExporterConfig", **fields, "export": export}
        path = self.tmp / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def marker(self, config_name: str = "exporter.yaml") -> Path:
        """The file the Lamp of config `config_name` writes in close()."""
        return self.tmp / f"closed-{Path(config_name).stem}"

    @contextmanager
    def exporter(self, config: Path, socket: Path, *extra: str) -> Iterator[RunningExporter]:
        """`jmp run --exporter-config CONFIG --unix-socket SOCKET`, ready for calls; stopped at exit."""
        log = self.tmp / f"run-{socket.name}.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [JMP, "run", "--exporter-config", str(config), "--unix-socket", str(socket), *extra],
                env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
            )
        running = RunningExporter(proc, socket, log)
        try:
            wait_until(lambda: running.ready or proc.poll() is not None, what=f"exporter on {socket}")
            if proc.poll() is not None:
                pytest.fail(f"jmp run exited with {proc.returncode}:\n{running.stderr}")
            yield running
        finally:
            running.stop()


@dataclass
class RunningExporter:
    """A `jmp run` process."""

    proc: subprocess.Popen[str]
    socket: Path
    log: Path

    @property
    def stderr(self) -> str:
        """What the process wrote to stderr so far."""
        return self.log.read_text(errors="replace")

    @property
    def ready(self) -> bool:
        """Whether the exporter serves driver calls (socket there, lease ready)."""
        return self.socket.is_socket() and "serving on" in self.stderr

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM the process and return its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Make sure the process is gone."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """A private environment for `jmp` and `j` processes."""
    if not Path(JMP).exists():
        pytest.skip(f"{JMP} is not installed (pip install -e .)")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JMP_", "JUMPSTARTER_", "_JMP_")) and k not in ("EDITOR", "VISUAL")}
    env.update(
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        JMP_SYSTEM_CONFIG_DIR=str(tmp_path / "etc"),
        PYTHONPATH=os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p),
        PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        PYTHONUNBUFFERED="1",
        SHELL="/bin/sh",
    )
    sockets = Path(tempfile.mkdtemp(prefix="jmp-it-"))
    try:
        yield Cli(env=env, tmp=tmp_path, sockets=sockets)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
