"""Starting and stopping one QEMU process: command line, QMP, host port forwards."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

#: Debian package providing each QEMU system emulator.
PACKAGES = {"x86_64": "qemu-system-x86", "aarch64": "qemu-system-arm", "arm": "qemu-system-arm"}
MACHINES = {"x86_64": "pc", "aarch64": "virt"}
CONSOLES = {"x86_64": "ttyS0", "aarch64": "ttyAMA0"}
START_TIMEOUT = 20.0
_PR_SET_PDEATHSIG = 1


def binary_for(arch: str) -> str:
    """Path of qemu-system-<arch>, or FileNotFoundError saying which package to install."""
    name = f"qemu-system-{arch}"
    found = shutil.which(name)
    if found is None:
        package = PACKAGES.get(arch, "qemu-system")
        raise FileNotFoundError(f"{name} is not installed; install it with `apt-get install {package}`")
    return found


def kvm_usable(arch: str) -> bool:
    """KVM only where it really works: /dev/kvm opens and the CPU has virtualisation extensions
    for the host architecture (a /dev/kvm without them hangs guests)."""
    if os.uname().machine != arch or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(vmx|svm)\b", flags)) if arch == "x86_64" else True


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(slots=True)
class VmSpec:
    """Everything that goes on a QEMU command line."""

    arch: str
    cpus: int
    memory_mb: int
    kernel: str | None
    initrd: str | None
    append: str
    disk: Path | None
    disk_format: str
    forwards: dict[str, int]  # name -> guest TCP port
    extra_args: list[str] = field(default_factory=list)
    accel: str = "auto"

    def argv(self, run_dir: Path) -> list[str]:
        """The command line, with sockets in `run_dir`."""
        accel = self.accel
        if accel == "auto":
            accel = "kvm" if kvm_usable(self.arch) else "tcg"
        args = [binary_for(self.arch), "-machine", MACHINES.get(self.arch, "virt"), "-accel", accel]
        if self.arch == "aarch64":
            args += ["-cpu", "cortex-a72" if accel == "tcg" else "host"]
        args += ["-m", str(self.memory_mb), "-smp", str(self.cpus), "-nodefaults", "-no-user-config"]
        args += ["-display", "none"]
        if self.kernel:
            args += ["-kernel", self.kernel]
            if self.initrd:
                args += ["-initrd", self.initrd]
            args += ["-append", self.append]
        serial = run_dir / "serial.sock"
        args += [
            "-chardev", f"socket,id=ser0,path={serial},server=on,wait=off,logfile={run_dir / 'console.log'}",
            "-serial", "chardev:ser0",
            "-qmp", f"unix:{run_dir / 'qmp.sock'},server=on,wait=off",
        ]  # fmt: skip
        forwards = ",".join(f"hostfwd=tcp:127.0.0.1:0-:{port}" for port in self.forwards.values())
        args += ["-netdev", "user,id=net0,restrict=on" + ("," + forwards if forwards else "")]
        args += ["-device", "virtio-net-pci,netdev=net0,romfile="]
        if self.disk is not None and self.disk.exists():
            args += ["-drive", f"file={self.disk},format={self.disk_format},if=virtio"]
        return args + list(self.extra_args)


class Vm:
    """One running QEMU: the process, its QMP connection and its forwarded ports."""

    def __init__(self, spec: VmSpec, run_dir: Path) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.qmp: Any = None
        self.host_ports: dict[int, int] = {}  # guest port -> host port

    @property
    def running(self) -> bool:
        """Whether the QEMU process is alive."""
        return self.process is not None and self.process.poll() is None

    async def start(self) -> None:
        """Start QEMU and connect QMP; raises with QEMU's own message when it fails."""
        for name in ("serial.sock", "qmp.sock"):
            (self.run_dir / name).unlink(missing_ok=True)
        argv = self.spec.argv(self.run_dir)
        log = open(self.run_dir / "qemu.log", "wb")  # noqa: ASYNC230
        # started from the event-loop thread (which lives as long as the exporter): the kernel
        # kills QEMU when that thread's process dies, however it dies
        setpriv = shutil.which("setpriv")
        if setpriv:  # util-linux sets the parent-death signal without a Python fork hook
            self.process = subprocess.Popen(  # noqa: ASYNC220 - spawning is quick
                [setpriv, "--pdeathsig", "KILL", "--", *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        else:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - spawning is quick
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent
            )
        log.close()
        try:
            await self._connect_qmp()
            await self._read_forwards()
        except BaseException:
            await self.kill()
            raise

    async def _connect_qmp(self) -> None:
        from qemu.qmp import QMPClient

        qmp_path = self.run_dir / "qmp.sock"
        with anyio.fail_after(START_TIMEOUT):
            while True:
                if self.process is not None and self.process.poll() is not None:
                    output = (self.run_dir / "qemu.log").read_text(errors="replace").strip()
                    raise RuntimeError(f"QEMU exited with code {self.process.returncode}: {output}")
                if qmp_path.exists():
                    client = QMPClient("jumpstarter")
                    try:
                        await client.connect(str(qmp_path))
                        self.qmp = client
                        return
                    except Exception:
                        pass
                await anyio.sleep(0.02)  # QEMU creates the socket a few ms after it starts

    async def _read_forwards(self) -> None:
        text = await self.qmp.execute("human-monitor-command", {"command-line": "info usernet"})
        for match in re.finditer(r"HOST_FORWARD\]\s+\d+\s+\S+\s+(\d+)\s+\S+\s+(\d+)", str(text)):
            self.host_ports[int(match.group(2))] = int(match.group(1))

    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run a QMP command."""
        if self.qmp is None:
            raise RuntimeError("the virtual machine is not running")
        return await self.qmp.execute(command, arguments) if arguments else await self.qmp.execute(command)

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - a deadline for a process exit
        """Wait up to `timeout` for QEMU to exit; True if it did."""
        if self.process is None:
            return True
        with anyio.move_on_after(timeout):
            await anyio.to_thread.run_sync(self.process.wait, abandon_on_cancel=True)
        return self.process.poll() is not None

    async def powerdown(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Ask the guest to shut down (ACPI); kill QEMU if it has not exited within `timeout`.
        Returns True when the guest shut down by itself."""
        if not self.running:
            await self._disconnect()
            return True
        try:
            await self.execute("system_powerdown")
        except Exception:
            pass
        graceful = await self.wait(timeout)
        if not graceful:
            await self.kill()
        await self._disconnect()
        return graceful

    async def kill(self) -> None:
        """Stop QEMU now."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            await anyio.to_thread.run_sync(self.process.wait)
        await self._disconnect()

    async def _disconnect(self) -> None:
        if self.qmp is not None:
            client, self.qmp = self.qmp, None
            try:
                with anyio.move_on_after(2):
                    await client.disconnect()
            except Exception:
                pass
