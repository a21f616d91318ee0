"""The QEMU driver: a virtual board whose children are its power switch, serial console,
network port forwards and flashable disk, so tests written for hardware run against it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anyio

from jumpstarter.driver import Driver, export, exportstream
from jumpstarter_driver_qemu.process import CONSOLES, Vm, VmSpec

COPY_CHUNK = 1 << 20


@dataclass(kw_only=True)
class QEMU(Driver):
    """A QEMU virtual machine (x86_64 first; aarch64 where the emulator is installed).

    Children: `power` (on / graceful off / hard kill / reset), `console` (serial console),
    `storage` (the disk image, flashable while powered off) and one network driver per entry of
    `forwards` (guest TCP ports reachable from clients, e.g. ssh: 22, http: 80)."""

    arch: str = "x86_64"
    cpus: int = 1
    memory: int = 128  # MiB
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None  # kernel command line; default: serial console for the arch
    disk: str | None = None  # disk image path; default: a file in the VM's state directory
    disk_format: str = "raw"
    disk_size: str | None = None  # create an empty raw disk of this size (e.g. "16M") when flashing nothing
    forwards: dict[str, int] = field(default_factory=lambda: {"ssh": 22})
    accel: str = "auto"  # auto (KVM when it really works, else TCG), kvm or tcg
    extra_args: list[str] = field(default_factory=list)
    shutdown_timeout: float = 10.0
    state_dir: str | None = None

    driver_type: ClassVar[str] = "composite"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, value in (("kernel", self.kernel), ("initrd", self.initrd)):
            if value is not None and not Path(value).is_file():
                raise FileNotFoundError(f"QEMU config {name}: {value} does not exist (build or fetch the image first)")
        if self.accel not in ("auto", "kvm", "tcg"):
            raise ValueError(f"QEMU config accel: expected auto, kvm or tcg, got {self.accel!r}")
        self._tmp = None if self.state_dir else tempfile.TemporaryDirectory(prefix="jmp-qemu-")
        self.run_dir = Path(self.state_dir or self._tmp.name)  # type: ignore[union-attr]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.disk_path = Path(self.disk) if self.disk else self.run_dir / "disk.img"
        self.vm: Vm | None = None
        self.children.setdefault("power", QemuPower(qemu=self))
        self.children.setdefault("console", QemuConsole(qemu=self))
        self.children.setdefault("storage", QemuFlasher(qemu=self))
        for name, guest_port in self.forwards.items():
            self.children.setdefault(name, QemuNetwork(qemu=self, guest_port=int(guest_port)))

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_qemu.client.QemuClient"

    def spec(self) -> VmSpec:
        """The command-line description of this VM."""
        append = self.cmdline if self.cmdline is not None else f"console={CONSOLES.get(self.arch, 'ttyS0')}"
        return VmSpec(
            arch=self.arch, cpus=self.cpus, memory_mb=self.memory, kernel=self.kernel, initrd=self.initrd,
            append=append, disk=self.disk_path, disk_format=self.disk_format, forwards=self.forwards,
            extra_args=self.extra_args, accel=self.accel,
        )  # fmt: skip

    @property
    def running(self) -> bool:
        """Whether the VM is powered on."""
        return self.vm is not None and self.vm.running

    async def power_on(self) -> None:
        """Start the VM (no-op when it is running)."""
        if self.running:
            return
        self.vm = Vm(self.spec(), self.run_dir)
        await self.vm.start()
        self.logger.info("powered on (qemu pid %d)", self.vm.process.pid if self.vm.process else -1)

    async def power_off(self, graceful: bool = True) -> None:
        """Stop the VM: ACPI power-down first (then kill after `shutdown_timeout`), or kill at once."""
        vm, self.vm = self.vm, None
        if vm is None:
            return
        if graceful:
            clean = await vm.powerdown(self.shutdown_timeout)
            self.logger.info("powered off (%s)", "guest shut down" if clean else "killed after timeout")
        else:
            await vm.kill()
            self.logger.info("powered off (killed)")

    @export
    def status(self) -> dict[str, Any]:
        """VM state: running, pid, forwarded host ports, disk image."""
        vm = self.vm if self.running else None
        return {
            "running": vm is not None,
            "pid": vm.process.pid if vm and vm.process else None,
            "forwards": {name: vm.host_ports.get(port) for name, port in self.forwards.items()} if vm else {},
            "disk": str(self.disk_path) if self.disk_path.exists() else None,
            "console_log": str(self.run_dir / "console.log"),
        }

    @export
    def console_tail(self, lines: int = 20) -> str:
        """The last lines the guest printed on its serial console (kept in console.log)."""
        path = self.run_dir / "console.log"
        if not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            text = f.read().decode(errors="replace")
        return "\n".join(text.replace("\r", "").splitlines()[-lines:])

    async def reset(self) -> None:
        """A session starts (or ends) with the VM off."""
        await self.power_off(graceful=False)

    async def close(self) -> None:
        """Nothing keeps running once the exporter stops."""
        await self.power_off(graceful=False)
        if self._tmp is not None:
            self._tmp.cleanup()


@dataclass(kw_only=True)
class QemuPower(Driver):
    """Power switch of the VM: on, off (graceful ACPI power-down), off(destroy) kills, cycle, reset."""

    qemu: QEMU = field(repr=False)
    driver_type: ClassVar[str] = "power"

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_power.client.VirtualPowerClient"

    @export
    async def on(self) -> None:
        """Power on (start QEMU)."""
        await self.qemu.power_on()

    @export
    async def off(self, destroy: bool = False) -> None:
        """Power off: ACPI shutdown, or kill QEMU at once with destroy=True."""
        await self.qemu.power_off(graceful=not destroy)

    @export
    async def reset(self) -> None:  # type: ignore[override]
        """Hardware reset of a running VM (QMP system_reset)."""
        if self.qemu.vm is not None and self.qemu.running:
            await self.qemu.vm.execute("system_reset")

    @export
    async def read(self) -> AsyncIterator[dict[str, float]]:
        """A simulated power reading: 0 W when off, a constant draw when on."""
        yield {"voltage": 12.0 if self.qemu.running else 0.0, "current": 0.5 if self.qemu.running else 0.0}


@dataclass(kw_only=True)
class QemuConsole(Driver):
    """The VM's first serial port (a QEMU unix-socket chardev) as a byte stream."""

    qemu: QEMU = field(repr=False)
    driver_type: ClassVar[str] = "serial"

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_pyserial.client.PySerialClient"

    @exportstream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        """A byte stream to the serial console (power the VM on first)."""
        if not self.qemu.running:
            raise ConnectionRefusedError("the virtual machine is powered off: power it on before opening the console")
        stream = await anyio.connect_unix(str(self.qemu.run_dir / "serial.sock"))
        async with stream:
            yield stream


@dataclass(kw_only=True)
class QemuNetwork(Driver):
    """A TCP port of the guest, reached through QEMU user-mode networking (hostfwd on 127.0.0.1)."""

    qemu: QEMU = field(repr=False)
    guest_port: int
    driver_type: ClassVar[str] = "network"

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_network.client.NetworkClient"

    @exportstream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        """A byte stream to the guest port."""
        vm = self.qemu.vm
        if vm is None or not self.qemu.running:
            raise ConnectionRefusedError(
                f"the virtual machine is powered off: guest port {self.guest_port} unreachable"
            )
        host_port = vm.host_ports.get(self.guest_port)
        if host_port is None:
            raise ConnectionRefusedError(f"guest port {self.guest_port} is not forwarded")
        stream = await anyio.connect_tcp("127.0.0.1", host_port)
        async with stream:
            yield stream


@dataclass(kw_only=True)
class QemuFlasher(Driver):
    """The VM's disk image: flash it from the client while the VM is off, or dump it."""

    qemu: QEMU = field(repr=False)
    driver_type: ClassVar[str] = "storage"

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_qemu.client.QemuFlasherClient"

    @export
    async def flash(self, source: Any) -> int:
        """Write the disk image from a client resource (atomically); returns the bytes written."""
        if self.qemu.running:
            raise RuntimeError("power the virtual machine off before flashing its disk")
        target = self.qemu.disk_path
        tmp = target.with_name(target.name + ".partial")
        written = 0
        async with self.resource(source) as stream, await anyio.open_file(tmp, "wb") as out:
            async for chunk in stream:
                await out.write(chunk)
                written += len(chunk)
        os.replace(tmp, target)
        self.logger.info("flashed %d bytes to %s", written, target)
        return written

    @export
    async def dump(self) -> AsyncIterator[bytes]:
        """The disk image, in chunks."""
        async with await anyio.open_file(self.qemu.disk_path, "rb") as f:
            while chunk := await f.read(COPY_CHUNK):
                yield chunk

    @export
    async def size(self) -> int:
        """Size of the disk image in bytes (0 when there is none)."""
        path = self.qemu.disk_path
        return path.stat().st_size if path.exists() else 0


#: Upstream spells the class this way too.
Qemu = QEMU
