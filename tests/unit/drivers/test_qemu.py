"""The QEMU driver against a real QEMU and the demo guest (skipped where either is missing)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jumpstarter.common.utils import serve
from jumpstarter_driver_qemu.driver import QEMU

GUEST = Path("/var/tmp/jumpstarter-dut")
needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or not (GUEST / "kernel").is_file(),
    reason="needs qemu-system-x86_64 and the demo guest (make demo builds it)",
)
PROMPT = r"root@dut:[^#]*# "


def test_missing_emulator_names_the_package() -> None:
    with serve(QEMU(arch="riscv64", forwards={})) as vm, pytest.raises(FileNotFoundError) as failure:
        vm.power.on()
    assert "qemu-system-riscv64" in str(failure.value)
    assert "apt-get install" in str(failure.value)


def test_bad_image_path_is_a_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as failure:
        QEMU(kernel=str(tmp_path / "nope" / "kernel"))
    assert "kernel" in str(failure.value) and "does not exist" in str(failure.value)


def test_bad_accel_is_rejected() -> None:
    with pytest.raises(ValueError, match="accel"):
        QEMU(accel="warp")


@needs_qemu
def test_power_console_status_and_graceful_off() -> None:
    vm_driver = QEMU(kernel=str(GUEST / "kernel"), initrd=str(GUEST / "initrd.img"), cmdline="console=ttyS0 quiet")
    with serve(vm_driver) as vm:
        assert vm.status()["running"] is False
        vm.power.on()
        status = vm.status()
        assert status["running"] and status["forwards"]["ssh"] > 0
        assert vm.wait_for_prompt(PROMPT, timeout=60, progress=False) > 0
        vm.power.off()
        assert vm.status()["running"] is False
    assert vm_driver.vm is None


@needs_qemu
def test_guest_without_prompt_times_out_with_console_lines() -> None:
    # no initramfs: the kernel panics and never offers a shell
    vm_driver = QEMU(kernel=str(GUEST / "kernel"), cmdline="console=ttyS0 panic=0", forwards={})
    with serve(vm_driver) as vm:
        vm.power.on()
        with pytest.raises(TimeoutError) as failure:
            vm.wait_for_prompt(PROMPT, timeout=8, progress=False)
        message = str(failure.value)
        assert "last console lines" in message
        assert "panic" in message.lower() or "Linux" in message
        vm.power.off(True)


@needs_qemu
def test_flash_refused_while_running_and_dump_round_trip(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"jumpstarter" * 100_000)
    vm_driver = QEMU(kernel=str(GUEST / "kernel"), initrd=str(GUEST / "initrd.img"), forwards={})
    with serve(vm_driver) as vm:
        assert vm.storage.flash(image, compression="gzip") == image.stat().st_size
        vm.storage.dump(tmp_path / "back.img")
        assert (tmp_path / "back.img").read_bytes() == image.read_bytes()
        vm.power.on()
        with pytest.raises(RuntimeError, match="power the virtual machine off"):
            vm.storage.flash(image)
        vm.power.off(True)
