"""Direct mode: `jmp run --tls-grpc-listener 127.0.0.1:0` as a real process, reached by `jmp shell
--tls-grpc`, `j` and the Python client over TCP (TLS, passphrase, one client at a time, hooks)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from jumpstarter.client.base import DriverClient
from jumpstarter.client.direct import DirectTarget
from jumpstarter.direct.tls import fingerprint
from jumpstarter.errors import ConnectionLostError, ExporterBusyError, UnauthenticatedError
from tests.integration.conftest import JMP, LAMP, Cli, J, assert_clean_failure, wait_until
from tests.integration.direct_helpers import make_ca

PASSPHRASE = "correct horse battery staple"
#: Exit codes of `jmp` (jumpstarter.cli.errors.EXIT_CODES).
UNAUTHENTICATED, BUSY, UNREACHABLE = 4, 5, 6


@dataclass
class DirectExporter:
    """A `jmp run --tls-grpc-listener` process and what it printed at start."""

    proc: subprocess.Popen[str]
    log: Path
    port: int
    fingerprint: str | None  # None: plain TCP
    passphrase: str | None  # None: --insecure-no-auth

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`."""
        return f"127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        """What the process wrote to stderr so far."""
        return self.log.read_text(errors="replace")

    def shell_args(self, *, passphrase: bool = True, trust: bool = True) -> list[str]:
        """`jmp shell` options reaching this exporter (with its passphrase and fingerprint unless told not to)."""
        args = ["--tls-grpc", self.address]
        if passphrase and self.passphrase:
            args += ["--passphrase", self.passphrase]
        if self.fingerprint is None:
            args.append("--tls-grpc-insecure")
        elif trust:
            args += ["--accept-fingerprint", self.fingerprint]
        return args

    def target(self, **overrides: Any) -> DirectTarget:
        """A DirectTarget for the Python client (passphrase and fingerprint filled in)."""
        values: dict[str, Any] = {
            "address": self.address,
            "passphrase": self.passphrase,
            "insecure": self.fingerprint is None,
            "accept_fingerprint": self.fingerprint,
        }
        values.update(overrides)
        return DirectTarget(**values)

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM the process and return its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@contextmanager
def direct_exporter(cli: Cli, config: Path, *extra: str, port: int = 0,
                    passphrase: str | None = PASSPHRASE) -> Iterator[DirectExporter]:
    """`jmp run --exporter-config CONFIG --tls-grpc-listener 127.0.0.1:PORT`, listening; stopped at exit.
    `passphrase=None` leaves it to `jmp run` (generated, or none with --insecure-no-auth)."""
    log = cli.tmp / f"run-{config.stem}-{time.monotonic_ns()}.log"
    # INFO: the session start and end lines help when a test fails
    argv = [JMP, "--log-level", "INFO", "run", "--exporter-config", str(config),
            "--tls-grpc-listener", f"127.0.0.1:{port}", *extra]
    if passphrase is not None:
        argv += ["--passphrase", passphrase]
    with log.open("w") as stderr:
        proc = subprocess.Popen(argv, env=cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr, text=True)
    try:
        # "authentication: ..." is the last line `jmp run` prints once it listens
        wait_until(lambda: "authentication:" in log.read_text() or proc.poll() is not None,
                   timeout=15, what="jmp run to listen")
        text = log.read_text()
        if proc.poll() is not None:
            pytest.fail(f"jmp run exited with {proc.returncode}:\n{text}")
        bound = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        assert bound, text
        printed_fingerprint = re.search(r"certificate fingerprint (SHA256:[0-9A-F:]+)", text)
        generated = re.search(r"generated passphrase (\S+)", text)
        if "authentication: NONE" in text:
            secret = None
        elif passphrase is not None:
            secret = passphrase
        else:
            secret = generated.group(1) if generated else (config.parent / f"{config.stem}.direct" /
                                                           "passphrase").read_text().strip()
        running = DirectExporter(proc, log, int(bound.group(1)),
                                 printed_fingerprint.group(1) if printed_fingerprint else None, secret)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def connect(target: DirectTarget) -> Iterator[DriverClient]:
    """A Python client tree on a direct-mode exporter (never prompts)."""
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.client import client_from_target

    with start_blocking_portal("asyncio") as portal, client_from_target(target, portal, interactive=False) as root:
        yield root


@pytest.fixture
def direct(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`cli`, with this test process (its in-process clients) sharing the config home of the children."""
    monkeypatch.setenv("XDG_CONFIG_HOME", cli.env["XDG_CONFIG_HOME"])
    for name in ("JMP_CLIENT_CONFIG_HOME", "JMP_CLIENT_ID", "JMP_GRPC_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    return cli


def known_exporters(cli: Cli) -> dict[str, str]:
    """The client's pinned fingerprints."""
    path = cli.config_home / "known_exporters.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def lamp_and_echo(cli: Cli, name: str = "exporter.yaml", **fields: Any) -> Path:
    """An exporter config with the test Lamp (`lamp`) and an Echo byte stream (`echo`)."""
    export = {
        "lamp": {"type": LAMP, "config": {"closed_marker": str(cli.marker(name))}},
        "echo": {"type": "direct_helpers.Echo"},
    }
    return cli.exporter_config(name, export=export, **fields)


# ---- trust ---------------------------------------------------------------------------------------

def test_certificate_from_a_test_ca(direct: Cli) -> None:
    ca = make_ca("Jumpstarter Test CA")
    ca_file = ca.write(direct.tmp / "ca.pem")
    cert, key = ca.issue(direct.tmp)
    other_ca_file = make_ca("Some Other CA").write(direct.tmp / "other-ca.pem")
    config = direct.exporter_config()
    with direct_exporter(direct, config, "--tls-cert", str(cert), "--tls-key", str(key)) as running:
        assert running.fingerprint == fingerprint(cert.read_bytes())  # it printed the given certificate's
        assert not (direct.tmp / "exporter.direct" / "cert.pem").exists()  # no self-signed one was made

        result = direct.jmp("shell", "--tls-grpc", running.address, "--tls-ca", str(ca_file),
                            "--passphrase", PASSPHRASE, "--", "j", "lamp", "on", "--level", "7")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "on at 7%\n"
        with connect(DirectTarget(running.address, passphrase=PASSPHRASE, ca_file=str(ca_file))) as root:
            assert root.children["lamp"].call("status") == 0  # a new session starts from reset drivers
        assert known_exporters(direct) == {}  # CA-verified exporters are not pinned

        pinned = direct.jmp("shell", *running.shell_args(), "--", "true")  # a CA-issued certificate cannot be pinned
        assert_clean_failure(pinned, "issued by CN=Jumpstarter Test CA", "--tls-ca")

        wrong = direct.jmp("shell", "--tls-grpc", running.address, "--tls-ca", str(other_ca_file),
                           "--passphrase", PASSPHRASE, "--", "true")
        assert_clean_failure(wrong, running.address, "certificate")
        assert wrong.returncode == UNREACHABLE
        with pytest.raises(ConnectionLostError, match="certificate"):
            with connect(DirectTarget(running.address, passphrase=PASSPHRASE, ca_file=str(other_ca_file))):
                pass


def test_trust_on_first_use(direct: Cli) -> None:
    config = direct.exporter_config()
    with direct_exporter(direct, config) as running:
        fp = running.fingerprint
        assert fp is not None
        assert fp == fingerprint((direct.tmp / "exporter.direct" / "cert.pem").read_bytes())

        untrusted = direct.jmp("shell", *running.shell_args(trust=False), "--", "true")
        assert_clean_failure(untrusted, fp, "--accept-fingerprint")
        assert untrusted.returncode == 1
        assert known_exporters(direct) == {}

        other = "SHA256:" + ":".join(["AB"] * 32)
        mismatch = direct.jmp("shell", *running.shell_args(trust=False), "--accept-fingerprint", other, "--", "true")
        assert_clean_failure(mismatch, other, fp)

        accepted = direct.jmp("shell", *running.shell_args(), "--", "j", "lamp", "on")
        assert accepted.returncode == 0, accepted.stderr
        assert known_exporters(direct) == {running.address: fp}

        remembered = direct.jmp("shell", *running.shell_args(trust=False), "--", "j", "lamp", "status")
        assert remembered.returncode == 0, remembered.stderr
        assert remembered.stdout == "0\n"
        port = running.port

    # another exporter (so another self-signed certificate) on the same address
    with direct_exporter(direct, direct.exporter_config("impostor.yaml"), port=port) as impostor:
        assert impostor.fingerprint not in (None, fp)
        changed = direct.jmp("shell", *impostor.shell_args(trust=False), "--", "true")
        assert_clean_failure(changed, fp, str(impostor.fingerprint), "known_exporters.yaml")
        # an --accept-fingerprint does not override a pin
        forced = direct.jmp("shell", *impostor.shell_args(), "--", "true")
        assert_clean_failure(forced, fp, str(impostor.fingerprint))
    assert known_exporters(direct) == {f"127.0.0.1:{port}": fp}


def test_saved_direct_exporter_config(direct: Cli) -> None:
    with direct_exporter(direct, direct.exporter_config()) as running:
        saved = direct.config_home / "exporters" / "remote.yaml"
        saved.parent.mkdir(parents=True)
        saved.write_text(yaml.safe_dump({"apiVersion": "jumpstarter.dev/v1alpha1", "kind": "ExporterConfig",
                                         "endpoint": running.address, "token": PASSPHRASE}))
        untrusted = direct.jmp("shell", "--exporter", "remote", "--", "true")
        assert_clean_failure(untrusted, str(running.fingerprint), "--accept-fingerprint")
        result = direct.jmp("shell", "--exporter", "remote", "--accept-fingerprint", str(running.fingerprint),
                            "--", "sh", "-c", 'echo "$JMP_EXPORTER"; j lamp on --level 4')
        assert result.returncode == 0, result.stderr
        assert result.stdout == "remote\non at 4%\n"
        wrong = direct.jmp("shell", "--exporter", "remote", "--passphrase", "not it", "--", "true")
        assert wrong.returncode == UNAUTHENTICATED, wrong.stderr  # the command line wins over the config


# ---- authentication ------------------------------------------------------------------------------

def test_wrong_and_missing_passphrase_then_rate_limit(direct: Cli) -> None:
    with direct_exporter(direct, direct.exporter_config()) as running:
        wrong = direct.jmp("shell", *running.shell_args(passphrase=False), "--passphrase", "guess", "--", "true")
        assert_clean_failure(wrong, "unauthenticated")
        assert wrong.returncode == UNAUTHENTICATED

        missing = direct.jmp("shell", *running.shell_args(passphrase=False), "--", "true")
        assert_clean_failure(missing, "unauthenticated")
        assert missing.returncode == UNAUTHENTICATED

        for attempt in range(3):  # failures 3, 4 and 5 from this host
            with pytest.raises(UnauthenticatedError, match="wrong or missing passphrase"):
                with connect(running.target(passphrase=f"guess {attempt}")):
                    pass

        refused = direct.jmp("shell", *running.shell_args(), "--", "true")
        assert_clean_failure(refused, "unauthenticated", "too many failed attempts")
        assert refused.returncode == UNAUTHENTICATED
        log = running.stderr
        assert log.count("failed authentication from ipv4:127.0.0.1") == 5, log
        assert "too many failed authentication attempts" in log


def test_generated_passphrase_is_kept(direct: Cli) -> None:
    config = direct.exporter_config()
    with direct_exporter(direct, config, passphrase=None) as running:
        assert "generated passphrase" in running.stderr
        secret = running.passphrase
        assert secret
        assert (direct.tmp / "exporter.direct" / "passphrase").read_text().strip() == secret
        with connect(running.target()) as root:
            assert root.children["lamp"].call("status") == 0
    with direct_exporter(direct, config, passphrase=None) as again:
        assert "generated passphrase" not in again.stderr
        assert again.passphrase == secret


def test_insecure_no_auth_and_motd(direct: Cli) -> None:
    config = direct.exporter_config(motd="Bench 3: do not unplug")
    with direct_exporter(direct, config, "--insecure-no-auth", passphrase=None) as running:
        assert "WARNING: --insecure-no-auth" in running.stderr
        assert "authentication: NONE" in running.stderr
        assert running.passphrase is None
        result = direct.jmp("shell", *running.shell_args(), "--", "j", "lamp", "on", "--level", "3")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "on at 3%\n"
        assert "Bench 3: do not unplug" in result.stderr


def test_plain_tcp(direct: Cli) -> None:
    with direct_exporter(direct, direct.exporter_config(), "--tls-grpc-insecure") as running:
        assert "WARNING: --tls-grpc-insecure" in running.stderr
        assert "(plain TCP)" in running.stderr
        assert running.fingerprint is None
        # `j` on the fast path and on the slow path (which dials TCP itself, without TLS)
        script = "j lamp on --level 8 && env -u JMP_J_SOCKET j lamp status"
        result = direct.jmp("shell", *running.shell_args(), "--", "sh", "-c", script)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "on at 8%\n8\n"
        assert "WARNING: --tls-grpc-insecure" in result.stderr
        assert not (direct.tmp / "exporter.direct" / "cert.pem").exists()


# ---- one client at a time ------------------------------------------------------------------------

def test_busy_until_the_holder_leaves(direct: Cli) -> None:
    with direct_exporter(direct, direct.exporter_config()) as running:
        with connect(running.target(client_name="alice@bench")) as root, root.log_stream():
            lamp = root.children["lamp"]
            assert lamp.call("on", 60) == "on at 60%"
            busy = direct.jmp("shell", *running.shell_args(), "--", "j", "lamp", "off")
            assert_clean_failure(busy, "busy: in use by alice@bench since")
            assert busy.returncode == BUSY
            with pytest.raises(ExporterBusyError, match="alice@bench"):
                with connect(running.target(client_name="bob@laptop")):
                    pass
            assert end_session_as(running.target(client_name="mallory")) == ExporterBusyError
            assert lamp.call("status") == 60  # the holder is unaffected

        def second_client_gets_in() -> subprocess.CompletedProcess[str] | None:
            result = direct.jmp("shell", *running.shell_args(), "--", "j", "lamp", "status")
            if result.returncode == BUSY:
                return None
            return result

        after = wait_until(second_client_gets_in, timeout=10, what="the exporter to accept the next client")
        assert after.returncode == 0, after.stderr
        assert after.stdout == "0\n"  # drivers were reset between the sessions
        assert "client alice@bench went away" in running.stderr


def end_session_as(target: DirectTarget) -> type[BaseException] | None:
    """Send a bare EndSession as `target`'s client; the type of error it gets (None: accepted)."""
    from jumpstarter.client.calls import error_from_rpc
    from jumpstarter.client.connection import Connection
    from jumpstarter.client.direct import credentials
    from jumpstarter.protocol.v1 import jumpstarter_pb2

    creds, options = credentials(target, interactive=False)
    connection = Connection(target.address, credentials=creds, channel_options=options,
                            call_credentials_metadata=target.metadata())
    try:
        connection.exporter_stub().EndSession(jumpstarter_pb2.EndSessionRequest(), metadata=connection.metadata(()))
    except Exception as exc:
        return type(error_from_rpc(exc) or exc)
    finally:
        connection.close()
    return None


STREAMING_CLIENT = """
import sys
from anyio.from_thread import start_blocking_portal
from jumpstarter.client.client import client_from_target
from jumpstarter.client.direct import DirectTarget

address, passphrase, fingerprint, how = sys.argv[1:]
target = DirectTarget(address, passphrase=passphrase, accept_fingerprint=fingerprint, client_name="doomed")
with start_blocking_portal("asyncio") as portal, client_from_target(target, portal, interactive=False) as root:
    with root.log_stream():
        if how == "stream":
            with root.children["echo"].stream("echo") as stream:
                while True:
                    stream.send(b"x" * 65536)
                    stream.receive()
                    print("streaming", flush=True)
        else:
            for line in root.children["lamp"].streamingcall("blink", 1_000_000, 0.01):
                print(line, flush=True)
"""


@contextmanager
def streaming_client(cli: Cli, running: DirectExporter, how: str) -> Iterator[subprocess.Popen[bytes]]:
    """A client process holding the exporter while it streams bytes (`stream`) or items
    (`streamingcall`) as fast as it can; SIGKILLed at exit."""
    out = cli.tmp / f"client-{how}.out"
    with out.open("w") as stdout:
        child = subprocess.Popen(
            [sys.executable, "-c", STREAMING_CLIENT, running.address, PASSPHRASE, str(running.fingerprint), how],
            env=cli.env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: out.read_text().count("\n") >= 3 or child.poll() is not None,
                   timeout=15, what="the client to stream")
        assert child.poll() is None, out.read_text()
        with pytest.raises(ExporterBusyError, match="doomed"):
            with connect(running.target()):
                pass
        yield child
    finally:
        child.kill()
        child.wait()


def next_client_gets_in(running: DirectExporter) -> bool:
    """Whether a new client can use the exporter now (False while it is busy)."""
    try:
        with connect(running.target()) as root:
            return root.children["lamp"].call("on", 1) == "on at 1%"
    except ExporterBusyError:
        return False


@pytest.mark.parametrize("how", ["stream", "streamingcall"])
def test_client_killed_mid_stream(direct: Cli, how: str) -> None:
    with direct_exporter(direct, lamp_and_echo(direct)) as running:
        with streaming_client(direct, running, how) as child:
            child.kill()  # SIGKILL: the kernel closes its connections
        wait_until(lambda: next_client_gets_in(running), timeout=15, what="a new client after the old one was killed")
        assert running.proc.poll() is None, running.stderr
        assert "Traceback" not in running.stderr, running.stderr


@pytest.mark.slow
def test_frozen_client_is_noticed_by_keepalive(direct: Cli) -> None:
    # a stopped process keeps its TCP connection open but answers no HTTP/2 ping: like a laptop
    # whose lid was closed, or a client behind a dead link
    with direct_exporter(direct, lamp_and_echo(direct)) as running:
        with streaming_client(direct, running, "streamingcall") as child:
            child.send_signal(signal.SIGSTOP)
            # keepalive: a ping every 5 s, given up 5 s later
            wait_until(lambda: next_client_gets_in(running), timeout=20,
                       what="the exporter to give up on the frozen client")
        assert running.proc.poll() is None, running.stderr


# ---- session boundaries --------------------------------------------------------------------------

def test_hooks_at_session_boundaries(direct: Cli) -> None:
    order = direct.tmp / "order"
    config = direct.exporter_config(hooks={
        "beforeLease": {"script": f"echo before >> {order}; j lamp on --level 42; echo preparing the lamp"},
        "afterLease": {"script": f"echo after $(j lamp status) >> {order}; echo cleaning up"},
    })
    command = ["sh", "-c", f"echo command $(j lamp status) >> {order}"]
    with direct_exporter(direct, config) as running:
        assert not order.exists()  # no hook runs until a client comes
        first = direct.jmp("shell", *running.shell_args(), "--", *command)
        assert first.returncode == 0, first.stderr
        assert order.read_text().splitlines() == ["before", "command 42", "after 42"]
        # hook output reaches the client through LogStream, as with a controller (without --exporter-logs)
        assert "[beforeLease] preparing the lamp" in first.stderr
        assert "[afterLease] cleaning up" in first.stderr

        second = direct.jmp("shell", *running.shell_args(), "--", *command)
        assert second.returncode == 0, second.stderr
        assert order.read_text().splitlines() == ["before", "command 42", "after 42"] * 2

        # a client that leaves without ending its session (no EndSession): afterLease still runs
        with connect(running.target()) as root, root.log_stream():
            assert root.children["lamp"].call("status") == 42
        wait_until(lambda: order.read_text().count("after") == 3, timeout=10, what="afterLease after the client left")
        assert order.read_text().splitlines()[-2:] == ["before", "after 42"]


def test_j_inside_and_outside_the_shell(direct: Cli) -> None:
    script = "; ".join([
        "j lamp on --level 42",
        "env -u JMP_J_SOCKET j lamp status",  # slow path: dials TCP again as the same client
        "env -u JMP_J_SOCKET j lamp on --level 5",
        "j lamp status",
        "env -u JMP_J_SOCKET JMP_CLIENT_ID=someone-else j lamp status; echo code=$?",
        "exit 3",
    ])
    with direct_exporter(direct, direct.exporter_config()) as running:
        result = direct.jmp("shell", *running.shell_args(), "--", "sh", "-c", script)
        assert result.returncode == 3, result.stderr
        assert result.stdout.splitlines() == ["on at 42%", "42", "on at 5%", "5", f"code={BUSY}"]
        assert "busy: in use by" in result.stderr

        # without a shell every `j` is a session of its own (the address is pinned by now)
        outside = {**direct.env, "JMP_GRPC_PASSPHRASE": PASSPHRASE}
        for args, expected in ((["on", "--level", "9"], "on at 9%\n"), (["status"], "0\n"), (["status"], "0\n")):
            alone = direct.run([J, "lamp", *args], env={**outside, "JUMPSTARTER_HOST": running.address})
            assert (alone.returncode, alone.stdout) == (0, expected), alone.stderr


def test_connection_refused_names_the_address(direct: Cli) -> None:
    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{bound.getsockname()[1]}"
        for transport in ([], ["--tls-grpc-insecure"]):
            result = direct.jmp("shell", "--tls-grpc", address, "--passphrase", "x", *transport, "--", "true")
            assert_clean_failure(result, f"cannot reach exporter at {address}")
            assert result.returncode == UNREACHABLE
        with pytest.raises(ConnectionLostError, match=address):
            with connect(DirectTarget(address, passphrase="x")):
                pass


def test_sigterm_exits_promptly(direct: Cli) -> None:
    with direct_exporter(direct, direct.exporter_config()) as idle:
        started = time.monotonic()
        assert idle.terminate() == 0, idle.stderr
        assert time.monotonic() - started < 5
    assert direct.marker().read_text() == "closed\n"

    with direct_exporter(direct, direct.exporter_config()) as running:
        with connect(running.target()) as root, root.log_stream():
            assert root.children["lamp"].call("on") == "on at 100%"
            started = time.monotonic()
            assert running.terminate() == 0, running.stderr
            assert time.monotonic() - started < 5
            with pytest.raises(ConnectionLostError):
                root.children["lamp"].call("status")
        assert "Traceback" not in running.stderr, running.stderr
