"""SSHWrapper against a real OpenSSH server started by the tests on a free loopback port."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jumpstarter.common.utils import serve
from jumpstarter.errors import ConfigurationError
from jumpstarter_driver_network.driver import EchoNetwork, TcpNetwork
from jumpstarter_driver_ssh.client import SSHCommandRunOptions, SSHWrapperClient, split_ssh_args
from jumpstarter_driver_ssh.driver import SSHWrapper
from tests.unit.drivers.conftest import drivers_from_yaml, exporter_socket, j_process, run_j

DEADLINE = 20
#: Our test server's host key is new every run and the user's ~/.ssh/config must not interfere.
SSH_COMMAND = (
    "ssh -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
    "-o BatchMode=yes -o IdentitiesOnly=yes"
)


@dataclass
class SshServer:
    """A running sshd: where it listens and the client key it accepts."""

    port: int
    client_key: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(binary) or not shutil.which("ssh-keygen") or not shutil.which("ssh"):
        pytest.skip("no OpenSSH server/client here (apt-get install openssh-server openssh-client)")
    home = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / name)], check=True)
    (home / "authorized_keys").write_text((home / "client_key.pub").read_text())
    port = _free_port()
    config = home / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {home}/host_key\n"
        f"AuthorizedKeysFile {home}/authorized_keys\nPidFile {home}/sshd.pid\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nLogLevel INFO\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    listening = threading.Event()
    log: list[str] = []

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            if "Server listening on" in line:
                listening.set()
        listening.set()  # sshd exited: stop waiting

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert listening.wait(DEADLINE) and proc.poll() is None, f"sshd did not start: {''.join(log)}"
        yield SshServer(port, home / "client_key")
    finally:
        proc.terminate()
        proc.wait(DEADLINE)


def ssh_driver(server: SshServer, **config: object) -> SSHWrapper:
    config.setdefault("default_username", getpass.getuser())
    config.setdefault("ssh_identity_file", str(server.client_key))
    config.setdefault("ssh_command", SSH_COMMAND)
    return SSHWrapper(children={"tcp": TcpNetwork(host="127.0.0.1", port=server.port)}, **config)  # type: ignore[arg-type]


def run_j_ssh(client: SSHWrapperClient, *argv: str) -> int:
    """`j ssh ARGV...` run in-process on the SSHWrapper client itself."""
    from jumpstarter.cli.jslow import invoke

    return invoke(client.cli(), list(argv))


def test_run_captures_output_and_exit_status(sshd: SshServer) -> None:
    with serve(ssh_driver(sshd)) as client:
        assert isinstance(client, SSHWrapperClient)
        result = client.run(SSHCommandRunOptions(), ["uname", "-s"])
        assert (result.return_code, result.stdout, result.stderr) == (0, "Linux\n", "")
        assert client.run(SSHCommandRunOptions(), ["exit", "7"]).return_code == 7


def test_inline_identity(sshd: SshServer) -> None:
    driver = ssh_driver(sshd, ssh_identity=sshd.client_key.read_text(), ssh_identity_file=None)
    with serve(driver) as client:
        result = client.run(SSHCommandRunOptions(), ["whoami"])
        assert (result.return_code, result.stdout) == (0, f"{getpass.getuser()}\n")


def test_without_key_login_is_refused(sshd: SshServer) -> None:
    with serve(ssh_driver(sshd, ssh_identity_file=None)) as client:
        assert client.run(SSHCommandRunOptions(), ["true"]).return_code == 255  # ssh's own failure status


def test_explicit_user_overrides_default(sshd: SshServer) -> None:
    with serve(ssh_driver(sshd, default_username="nobody-here")) as client:
        assert client.run(SSHCommandRunOptions(), ["true"]).return_code == 255
        result = client.run(SSHCommandRunOptions(), ["-l", getpass.getuser(), "echo", "ok"])
        assert (result.return_code, result.stdout) == (0, "ok\n")


def test_direct_falls_back_to_port_forward(sshd: SshServer) -> None:
    with serve(ssh_driver(sshd)) as client:
        result = client.run(SSHCommandRunOptions(direct=True), ["echo", "forwarded"])
        assert (result.return_code, result.stdout) == (0, "forwarded\n")


def test_j_ssh_in_process_propagates_exit_code(sshd: SshServer, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(ssh_driver(sshd)) as root:
        assert run_j_ssh(root, "--", "echo", "hello") == 0
        assert capsys.readouterr().out == "hello\n"
        assert run_j_ssh(root, "--", "exit", "3") == 3


def test_j_ssh_process_from_exporter_config(sshd: SshServer) -> None:
    root = drivers_from_yaml(
        f"  ssh:\n    type: jumpstarter_driver_ssh.driver.SSHWrapper\n    config:\n"
        f"      default_username: {getpass.getuser()}\n      ssh_identity_file: {sshd.client_key}\n"
        f"      ssh_command: {SSH_COMMAND}\n"
        f"    children:\n      tcp:\n        type: jumpstarter_driver_network.driver.TcpNetwork\n"
        f"        config:\n          host: 127.0.0.1\n          port: {sshd.port}\n"
    )
    with exporter_socket(root) as host:
        proc = j_process(host, "ssh", "--", "uname", "-a")
        out, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, err
        assert out.startswith("Linux ")
        proc = j_process(host, "ssh", "--", "echo", "failing", ";", "exit", "5")
        out, err = proc.communicate(timeout=DEADLINE)
        assert (proc.returncode, out) == (5, "failing\n"), err


def test_j_ssh_listed_in_j_tree(sshd: SshServer, capsys: pytest.CaptureFixture[str]) -> None:
    from jumpstarter_driver_composite.driver import Composite

    with serve(Composite(children={"ssh": ssh_driver(sshd)})) as root:
        assert run_j(root, "ssh", "--", "echo", "via-tree") == 0
        assert "via-tree" in capsys.readouterr().out


def test_missing_ssh_program_reports_127() -> None:
    driver = SSHWrapper(ssh_command="jmp-no-such-ssh-program", children={"tcp": EchoNetwork()})
    with serve(driver) as client:
        result = client.run(SSHCommandRunOptions(), ["true"])
        assert result.return_code == 127
        assert "jmp-no-such-ssh-program" in str(result.stderr)


# ---- pure logic and configuration ------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "options", "command"),
    [
        ([], [], []),
        (["uname", "-a"], [], ["uname", "-a"]),
        (["-l", "root", "uname", "-a"], ["-l", "root"], ["uname", "-a"]),
        (["-t", "-o", "ConnectTimeout=3", "top"], ["-t", "-o", "ConnectTimeout=3"], ["top"]),
        (["-lroot", "ls", "-l"], ["-lroot"], ["ls", "-l"]),
        (["--", "ls"], [], ["--", "ls"]),
    ],
)
def test_split_ssh_args(args: list[str], options: list[str], command: list[str]) -> None:
    assert split_ssh_args(args) == (options, command)


def test_build_command() -> None:
    driver = SSHWrapper(default_username="root", ssh_command="ssh -q", children={"tcp": EchoNetwork()})
    with serve(driver) as client:
        assert client.build_command("127.0.0.1", 2222, ["uname"], "/k") == [
            "ssh", "-q", "-i", "/k", "-p", "2222", "-l", "root", "127.0.0.1", "uname",
        ]
        assert client.build_command("h", 22, ["-l", "pi", "ls"]) == ["ssh", "-q", "-p", "22", "-l", "pi", "h", "ls"]


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"children\.tcp"):
        SSHWrapper()
    with pytest.raises(ConfigurationError, match="ssh_identity, ssh_identity_file"):
        SSHWrapper(ssh_identity="k", ssh_identity_file=__file__, children={"tcp": EchoNetwork()})
    with pytest.raises(ConfigurationError, match=r"ssh_identity_file: .*nope"):
        SSHWrapper(ssh_identity_file=str(tmp_path / "nope"), children={"tcp": EchoNetwork()})
    with pytest.raises(ConfigurationError, match="ssh_command"):
        SSHWrapper(ssh_command="ssh 'unbalanced", children={"tcp": EchoNetwork()})
    with pytest.raises(ConfigurationError, match=r"export\.ssh"):
        drivers_from_yaml("  ssh:\n    type: SSHWrapper\n")
