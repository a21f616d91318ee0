"""Storage drivers over real files: OpenDAL's fs backend, the file-backed flasher and storage mux,
uploads with and without compression, downloads, checksums, `j storage flash|dump`."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
from pathlib import Path

import pytest

from jumpstarter.common.utils import serve
from jumpstarter.errors import ConfigurationError
from jumpstarter_driver_opendal.client import FlasherClient, OpendalClient, StorageMuxClient, StorageMuxFlasherClient
from jumpstarter_driver_opendal.driver import MockFlasher, MockStorageMux, MockStorageMuxFlasher, Opendal
from tests.unit.drivers.conftest import drivers_from_yaml, exporter_socket, j_process, run_j

MiB = 1 << 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, bytes]:
    """A 4 MiB disk image, compressible like real ones."""
    data = (os.urandom(64 * 1024) + bytes(192 * 1024)) * 16
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    return path, data


# ---- storage mux ----------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", [None, "gzip", "xz", "bz2", "zstd"])
def test_storage_mux_write_read_back(image: tuple[Path, bytes], tmp_path: Path, compression: str | None) -> None:
    path, data = image
    card = tmp_path / "card.img"
    with serve(MockStorageMux(path=str(card))) as storage:
        assert isinstance(storage, StorageMuxClient)
        result = storage.write_from_path(path, compression=compression)
        assert result == {"size": len(data), "sha256": sha256(data), "skipped": False}
        assert card.read_bytes() == data
        assert storage.hash() == sha256(data)
        assert storage.read_into_path(tmp_path / "back.img") == len(data)
        assert (tmp_path / "back.img").read_bytes() == data


@pytest.mark.parametrize(("suffix", "compress"), [(".gz", gzip.compress), (".xz", lzma.compress)])
def test_compressed_images_are_decompressed_on_the_exporter(
    image: tuple[Path, bytes], tmp_path: Path, suffix: str, compress: object
) -> None:
    _, data = image
    packed = tmp_path / f"disk.img{suffix}"
    packed.write_bytes(compress(data))  # type: ignore[operator]
    with serve(MockStorageMux()) as storage:
        result = storage.write_from_path(packed)
        assert (result["size"], result["sha256"]) == (len(data), sha256(data))
        assert storage.read_bytes() == data


def test_unchanged_image_is_not_sent_again(image: tuple[Path, bytes]) -> None:
    path, data = image
    with serve(MockStorageMux()) as storage:
        assert storage.write_from_path(path)["skipped"] is False
        sent: list[int] = []
        again = storage.write_from_path(path, progress=lambda done, total: sent.append(done))
        assert again == {"size": len(data), "sha256": sha256(data), "skipped": True}
        assert sent == [len(data)]
        assert storage.write_from_path(path, skip_unchanged=False)["skipped"] is False


def test_progress_reports_bytes_read(image: tuple[Path, bytes]) -> None:
    path, data = image
    seen: list[tuple[int, int | None]] = []
    with serve(MockStorageMux()) as storage:
        storage.write_from_path(path, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(data), len(data))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_64_mib_round_trip(tmp_path: Path) -> None:
    data = os.urandom(64 * MiB)
    source = tmp_path / "big.img"
    source.write_bytes(data)
    with serve(MockStorageMux()) as storage:
        assert storage.write_from_path(source)["sha256"] == sha256(data)
        assert storage.read_into_path(tmp_path / "big.back", compression=None) == len(data)
    assert sha256((tmp_path / "big.back").read_bytes()) == sha256(data)


def test_bytes_and_mux_switching() -> None:
    with serve(MockStorageMuxFlasher()) as storage:
        assert isinstance(storage, StorageMuxFlasherClient)
        assert storage.state() == "off"
        storage.host()
        assert storage.state() == "host"
        assert storage.write_bytes(b"\x00\xffboot")["size"] == 6
        assert storage.read_bytes() == b"\x00\xffboot"
        storage.dut()
        assert storage.state() == "dut"


def test_flash_switches_to_host_then_dut(image: tuple[Path, bytes], tmp_path: Path) -> None:
    path, data = image
    with serve(MockStorageMuxFlasher()) as storage:
        storage.flash(path)
        assert storage.state() == "dut"
        storage.dump(tmp_path / "dump.img.gz", compression="gzip")
        assert gzip.decompress((tmp_path / "dump.img.gz").read_bytes()) == data
        with pytest.raises(ValueError, match="no partitions"):
            storage.flash(path, partition="boot")


def test_missing_local_file_is_named(tmp_path: Path) -> None:
    with serve(MockStorageMux()) as storage, pytest.raises(FileNotFoundError, match=r"nope\.img"):
        storage.write_from_path(tmp_path / "nope.img")


# ---- flasher ------------------------------------------------------------------------------------
def test_flasher_partitions(image: tuple[Path, bytes], tmp_path: Path) -> None:
    path, data = image
    boot = tmp_path / "boot.img"
    boot.write_bytes(b"kernel" * 1000)
    with serve(MockFlasher(directory=str(tmp_path))) as flasher:
        assert isinstance(flasher, FlasherClient)
        results = flasher.flash({"boot": boot, "rootfs": path})
        assert results["rootfs"]["sha256"] == sha256(data)
        assert flasher.flash(boot, partition="boot")["skipped"] is True
        assert flasher.dump(tmp_path / "rootfs.back", partition="rootfs") == len(data)
        assert (tmp_path / "rootfs.back").read_bytes() == data
        assert (tmp_path / "rootfs").read_bytes() == data  # a partition is a file in `directory`
        with pytest.raises(FileNotFoundError, match="partition misc has not been flashed"):
            flasher.dump(tmp_path / "misc.back", partition="misc")
        assert not (tmp_path / "misc.back").exists()  # no half-written local file
        with pytest.raises(ValueError, match="invalid partition name"):
            flasher.flash(boot, partition="../escape")


# ---- Opendal ------------------------------------------------------------------------------------
@pytest.fixture
def opendal_root(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    return root


def test_opendal_files(opendal_root: Path, image: tuple[Path, bytes], tmp_path: Path) -> None:
    path, data = image
    with serve(Opendal(scheme="fs", kwargs={"root": str(opendal_root)})) as store:
        assert isinstance(store, OpendalClient)
        store.write_bytes("dir/hello.txt", b"hello")
        assert (opendal_root / "dir" / "hello.txt").read_bytes() == b"hello"
        assert store.read_bytes("dir/hello.txt") == b"hello"
        assert store.hash("dir/hello.txt", "md5") == "5d41402abc4b2a76b9719d911017c592"
        meta = store.stat("dir/hello.txt")
        assert meta.mode.is_file() and meta.content_length == 5
        assert store.stat("dir/").mode.is_dir()
        assert store.write_from_path("images/disk.img", path, compression="zstd")["sha256"] == sha256(data)
        assert store.read_into_path("images/disk.img", tmp_path / "copy.img") == len(data)
        assert (tmp_path / "copy.img").read_bytes() == data
        store.copy("dir/hello.txt", "dir/copy.txt")
        store.rename("dir/copy.txt", "dir/moved.txt")
        assert sorted(store.list("dir/")) == ["dir/", "dir/hello.txt", "dir/moved.txt"]
        store.create_dir("empty/sub/")
        assert "empty/sub/" in set(store.scan("empty/"))
        store.delete("dir/moved.txt")
        assert not store.exists("dir/moved.txt")
        store.remove_all("empty/")
        assert not store.exists("empty/")
        assert store.capability()["copy"] is True
        with pytest.raises(FileNotFoundError, match=r"nothing\.bin"):
            store.read_bytes("nothing.bin")
        with pytest.raises(FileNotFoundError, match=r"nothing\.bin"):
            store.stat("nothing.bin")


def test_opendal_removes_created_on_close(opendal_root: Path) -> None:
    (opendal_root / "keep.txt").write_bytes(b"before")
    with serve(Opendal(scheme="fs", kwargs={"root": str(opendal_root)}, remove_created_on_close=True)) as store:
        store.write_bytes("session/a.txt", b"a")
        store.write_bytes("b.txt", b"b")
        assert store.get_created_resources() == {"session/a.txt", "b.txt"}
    assert sorted(p.name for p in opendal_root.iterdir()) == ["keep.txt", "session"]
    assert not (opendal_root / "session" / "a.txt").exists()


def test_opendal_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigurationError, match=r"Opendal config scheme: .*not registered"):
        Opendal(scheme="no-such-service")
    with pytest.raises(ConfigurationError, match=r"Opendal config kwargs: .*root"):
        Opendal(scheme="fs")
    with pytest.raises(ConfigurationError, match=r"export\.storage"):
        drivers_from_yaml("  storage:\n    type: Opendal\n    config:\n      scheme: nope\n")
    with pytest.raises(ConfigurationError, match="MockFlasher config directory"):
        MockFlasher(directory="/nonexistent/dir")


# ---- j storage ----------------------------------------------------------------------------------
def test_j_storage_flash_and_dump(
    image: tuple[Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, data = image
    card = tmp_path / "card.img"
    root = drivers_from_yaml(
        "  storage:\n    type: jumpstarter_driver_opendal.driver.MockStorageMuxFlasher\n"
        f"    config:\n      path: {card}\n"
    )
    with serve(root) as client:
        assert run_j(client, "storage", "flash", str(path)) == 0
        assert "written" in capsys.readouterr().err
        assert card.read_bytes() == data
        assert run_j(client, "storage", "flash", str(path)) == 0
        assert "already up to date" in capsys.readouterr().err
        assert run_j(client, "storage", "dump", str(tmp_path / "dump.img")) == 0
        assert (tmp_path / "dump.img").read_bytes() == data
        assert client.storage.state() == "dut"


def test_j_storage_flash_process(image: tuple[Path, bytes], tmp_path: Path) -> None:
    path, data = image
    root = drivers_from_yaml("  storage:\n    type: MockStorageMux\n")
    with exporter_socket(root) as host:
        proc = j_process(host, "storage", "flash", "--compression", "gzip", str(path))
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert sha256(data) in err
        proc = j_process(host, "storage", "flash", str(tmp_path / "missing.img"))
        _, err = proc.communicate(timeout=30)
        assert proc.returncode != 0
        assert "missing.img" in err
