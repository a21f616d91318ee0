"""Clients of the storage drivers: files on an `Opendal` backend, flashers and storage muxes,
and their `j` commands (`j storage flash FILE`, `j storage dump FILE`, ...)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jumpstarter.client import DriverClient
from jumpstarter.streams import encoding
from jumpstarter_driver_opendal.client_files import PathLike, download_bytes, download_file, progress_bar, upload_file
from jumpstarter_driver_opendal.common import Metadata
from jumpstarter_driver_opendal.transfer import (
    Progress,
)

if TYPE_CHECKING:
    import click



def _compression_option() -> Any:
    import click

    return click.option("--compression", type=click.Choice(encoding.supported()),
                        help="Compress on the wire (images already compressed are sent as they are)")


# ---- Opendal ------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class OpendalClient(DriverClient):
    """Client of an `Opendal` driver: files on the exporter's storage backend.

        storage.write_from_path("images/os.img", "build/os.img.xz")
        assert storage.hash("images/os.img") == expected_sha256
    """

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write `data` to `path`."""
        with self.resource(bytes(data)) as handle:
            self.call("write", path, handle)

    def read_bytes(self, path: str) -> bytes:
        """The content of `path`."""
        return download_bytes(self, "read_stream", {"path": path})

    def write_from_path(
        self, dst: str, src: PathLike, *, compression: str | None = None, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Write the local file `src` to `dst` (compressed files are decompressed on the exporter);
        returns {"size", "sha256", "skipped"}."""
        return upload_file(self, src, lambda handle: self.call("write", dst, handle), None,
                           compression=compression, progress=progress)

    def read_into_path(self, src: str, dst: PathLike, *, progress: Progress | None = None) -> int:
        """Copy `src` into the local file `dst`; returns the bytes copied."""
        return download_file(self, "read_stream", {"path": src}, dst, progress=progress)

    def stat(self, path: str) -> Metadata:
        """Metadata of `path` (`stat(p).mode.is_file()`, `.content_length`, ...)."""
        return Metadata.from_wire(self.call("stat", path))

    def hash(self, path: str, algo: str = "sha256") -> str:
        """Hex digest of a file (sha256 or md5)."""
        return self.call("hash", path, algo)

    def exists(self, path: str) -> bool:
        """Whether `path` exists."""
        return self.call("exists", path)

    def copy(self, source: str, target: str) -> None:
        """Copy a file."""
        self.call("copy", source, target)

    def rename(self, source: str, target: str) -> None:
        """Rename a file."""
        self.call("rename", source, target)

    def delete(self, path: str) -> None:
        """Delete a file."""
        self.call("delete", path)

    def create_dir(self, path: str) -> None:
        """Create a directory (`path` ends with '/'), parents included."""
        self.call("create_dir", path)

    def remove_all(self, path: str) -> None:
        """Remove a directory tree."""
        self.call("remove_all", path)

    def list(self, path: str) -> Iterator[str]:
        """Entries directly under `path`."""
        yield from self.streamingcall("list", path)

    def scan(self, path: str) -> Iterator[str]:
        """Entries under `path`, recursively."""
        yield from self.streamingcall("scan", path)

    def capability(self) -> dict[str, Any]:
        """What the backend supports."""
        return self.call("capability")

    def get_created_resources(self) -> set[str]:
        """Paths created in this session."""
        return set(self.call("get_created_resources"))

    def cli(self) -> click.Group:
        """`j <name> write-from-path|read-into-path|write-bytes|read-bytes|hash|stat|exists|list|...`"""
        import click

        @click.group()
        def base() -> None:
            """Files on the exporter's storage"""

        @base.command(name="write-from-path")
        @click.argument("dst")
        @click.argument("src", type=click.Path(exists=True, dir_okay=False))
        @_compression_option()
        def write_from_path(dst: str, src: str, compression: str | None) -> None:
            """Write local file SRC to DST"""
            with progress_bar(f"{src} -> {dst}") as progress:
                self.write_from_path(dst, src, compression=compression, progress=progress)

        @base.command(name="read-into-path")
        @click.argument("src")
        @click.argument("dst", type=click.Path(dir_okay=False))
        def read_into_path(src: str, dst: str) -> None:
            """Copy SRC into local file DST"""
            with progress_bar(f"{src} -> {dst}") as progress:
                self.read_into_path(src, dst, progress=progress)

        @base.command(name="write-bytes")
        @click.argument("path")
        def write_bytes(path: str) -> None:
            """Write stdin to PATH"""
            self.write_bytes(path, sys.stdin.buffer.read())

        @base.command(name="read-bytes")
        @click.argument("path")
        def read_bytes(path: str) -> None:
            """Write PATH to stdout"""
            sys.stdout.buffer.write(self.read_bytes(path))
            sys.stdout.buffer.flush()

        @base.command()
        @click.argument("path")
        @click.option("--algo", type=click.Choice(["sha256", "md5"]), default="sha256", show_default=True)
        def hash(path: str, algo: str) -> None:
            """Print the hash of PATH"""
            click.echo(self.hash(path, algo))

        @base.command()
        @click.argument("path")
        def stat(path: str) -> None:
            """Print the metadata of PATH"""
            meta = self.stat(path)
            click.echo(f"mode: {meta.mode.value}\nsize: {meta.content_length}\nmodified: {meta.last_modified}")

        @base.command()
        @click.argument("path")
        def exists(path: str) -> None:
            """Exit 0 when PATH exists, 1 otherwise"""
            if not self.exists(path):
                raise click.ClickException(f"{path} does not exist")

        @base.command(name="list")
        @click.argument("path", default="/")
        @click.option("-r", "--recursive", is_flag=True, help="List everything below PATH")
        def list_(path: str, recursive: bool) -> None:
            """List the entries under PATH"""
            for entry in self.scan(path) if recursive else self.list(path):
                click.echo(entry)

        for name, move in (("copy", self.copy), ("rename", self.rename)):
            base.add_command(click.Command(
                name, help=f"{name.capitalize()} SOURCE to TARGET",
                params=[click.Argument(["source"]), click.Argument(["target"])],
                callback=lambda source, target, move=move: move(source, target),
            ))
        for name, change in (("delete", self.delete), ("create-dir", self.create_dir),
                             ("remove-all", self.remove_all)):
            base.add_command(click.Command(
                name, help=f"{name.replace('-', ' ').capitalize()} PATH",
                params=[click.Argument(["path"])], callback=lambda path, change=change: change(path),
            ))
        return base


# ---- flashers and storage muxes -----------------------------------------------------------------
def _flasher_commands(group: click.Group, client: Any) -> None:
    """Add `flash FILE` and `dump FILE` to `group`."""
    import click

    @group.command()
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--partition", "-p", help="Partition to flash (default: the whole device)")
    @_compression_option()
    @click.option("--force", is_flag=True, help="Write even when the device already holds this image")
    def flash(file: str, partition: str | None, compression: str | None, force: bool) -> None:
        """Flash the image FILE (gzip/xz/bz2/zstd images are decompressed on the exporter)"""
        with progress_bar(f"flashing {Path(file).name}") as progress:
            result = client.flash(file, partition=partition, compression=compression, progress=progress,
                                  skip_unchanged=not force)
        what = "already up to date" if result.get("skipped") else f"written, {result.get('size')} bytes"
        click.echo(f"{file}: {what} (sha256 {result.get('sha256')})", err=True)

    @group.command()
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--partition", "-p", help="Partition to dump (default: the whole device)")
    @click.option("--compression", type=click.Choice(encoding.supported()), help="Compress FILE")
    def dump(file: str, partition: str | None, compression: str | None) -> None:
        """Copy the device's content into FILE"""
        with progress_bar(f"dumping to {Path(file).name}") as progress:
            client.dump(file, partition=partition, compression=compression, progress=progress)


@dataclass(kw_only=True)
class FlasherClient(DriverClient):
    """Client of a flasher: `flash(image)` writes an image, `dump(path)` reads one back."""

    def flash(
        self,
        path: PathLike | dict[str, PathLike],
        *,
        partition: str | None = None,
        compression: str | None = None,
        progress: Progress | None = None,
        skip_unchanged: bool = True,
    ) -> dict[str, Any]:
        """Flash the image `path` (or {partition: path} for several); returns {"size", "sha256",
        "skipped"} (per partition for several). An unchanged uncompressed image is skipped."""
        if isinstance(path, dict):
            if partition is not None:
                raise ValueError("give partitions either as a mapping or with partition=, not both")
            return {name: self.flash(image, partition=name, compression=compression, progress=progress,
                                     skip_unchanged=skip_unchanged) for name, image in path.items()}
        current = (lambda: self.call("hash", partition)) if skip_unchanged else None
        return upload_file(self, path, lambda handle: self.call("flash", handle, partition), current,
                           compression=compression, progress=progress)

    def dump(
        self,
        path: PathLike,
        *,
        partition: str | None = None,
        compression: str | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Copy a partition (None: the whole device) into the local file `path`; returns its size."""
        return download_file(self, "dump_stream", {"partition": partition}, path,
                             compression=compression, progress=progress)

    def cli(self) -> click.Group:
        """`j <name> flash FILE`, `j <name> dump FILE`."""
        import click

        @click.group()
        def base() -> None:
            """Flasher"""

        _flasher_commands(base, self)
        return base


@dataclass(kw_only=True)
class StorageMuxClient(DriverClient):
    """Client of a storage mux (SD-card mux): switch the card between host and DUT, write images
    to it and read it back. `flash(image)` does host, write, dut."""

    def host(self) -> None:
        """Connect the storage to the exporter host."""
        self.call("host")

    def dut(self) -> None:
        """Connect the storage to the DUT."""
        self.call("dut")

    def off(self) -> None:
        """Disconnect the storage."""
        self.call("off")

    def state(self) -> str:
        """Where the storage is connected: off, host or dut."""
        return self.call("state")

    def write(self, handle: Any) -> dict[str, Any]:
        """Write a resource handle's bytes to the storage."""
        return self.call("write", handle)

    def hash(self, algo: str = "sha256") -> str:
        """Hex digest of the storage's content."""
        return self.call("hash", algo)

    def write_from_path(
        self,
        path: PathLike,
        *,
        compression: str | None = None,
        progress: Progress | None = None,
        skip_unchanged: bool = True,
    ) -> dict[str, Any]:
        """Write the local image `path` to the storage (see `upload_file`)."""
        current = self.hash if skip_unchanged else None
        return upload_file(self, path, self.write, current, compression=compression, progress=progress)

    def write_bytes(self, data: bytes) -> dict[str, Any]:
        """Write `data` as the storage's content."""
        with self.resource(bytes(data)) as handle:
            return self.write(handle)

    def read_into_path(
        self, path: PathLike, *, compression: str | None = None, progress: Progress | None = None
    ) -> int:
        """Copy the storage's content into the local file `path`; returns its size."""
        return download_file(self, "read_stream", {}, path, compression=compression, progress=progress)

    def read_bytes(self) -> bytes:
        """The storage's content."""
        return download_bytes(self, "read_stream", {})

    def write_local_file(self, filepath: PathLike) -> dict[str, Any]:
        """Write a local file to the storage (upstream name of `write_from_path`)."""
        return self.write_from_path(filepath, skip_unchanged=False)

    def read_local_file(self, filepath: PathLike) -> int:
        """Read the storage into a local file (upstream name of `read_into_path`)."""
        return self.read_into_path(filepath)

    def flash(
        self,
        path: PathLike,
        *,
        partition: str | None = None,
        compression: str | None = None,
        progress: Progress | None = None,
        skip_unchanged: bool = True,
    ) -> dict[str, Any]:
        """Connect to host, write the image `path`, connect to the DUT (also when writing fails)."""
        if partition is not None:
            raise ValueError(f"a storage mux has no partitions (got partition={partition!r})")
        self.host()
        try:
            return self.write_from_path(path, compression=compression, progress=progress,
                                        skip_unchanged=skip_unchanged)
        finally:
            self.dut()

    def dump(
        self,
        path: PathLike,
        *,
        partition: str | None = None,
        compression: str | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Connect to host, read the storage into `path`, connect to the DUT."""
        if partition is not None:
            raise ValueError(f"a storage mux has no partitions (got partition={partition!r})")
        self.host()
        try:
            return self.read_into_path(path, compression=compression, progress=progress)
        finally:
            self.dut()

    def cli(self) -> click.Group:
        """`j <name> host|dut|off|flash FILE|dump FILE|write-local-file FILE|read-local-file FILE`."""
        import click

        @click.group()
        def base() -> None:
            """Storage mux"""

        for name, verb, text in (
            ("host", self.host, "Connect the storage to the exporter host"),
            ("dut", self.dut, "Connect the storage to the DUT"),
            ("off", self.off, "Disconnect the storage"),
        ):
            base.add_command(click.Command(name, help=text, callback=lambda verb=verb: verb()))

        @base.command(name="write-local-file")
        @click.argument("file", type=click.Path(exists=True, dir_okay=False))
        def write_local_file(file: str) -> None:
            """Write FILE to the storage (without switching it)"""
            with progress_bar(f"writing {Path(file).name}") as progress:
                self.write_from_path(file, progress=progress, skip_unchanged=False)

        @base.command(name="read-local-file")
        @click.argument("file", type=click.Path(dir_okay=False))
        def read_local_file(file: str) -> None:
            """Read the storage into FILE (without switching it)"""
            with progress_bar(f"reading into {Path(file).name}") as progress:
                self.read_into_path(file, progress=progress)

        _flasher_commands(base, self)
        return base


@dataclass(kw_only=True)
class StorageMuxFlasherClient(StorageMuxClient, FlasherClient):
    """A storage mux used as a flasher: `flash`/`dump` switch to host and back to the DUT."""

    flash = StorageMuxClient.flash  # type: ignore[assignment]  # no partition mappings on a mux
    dump = StorageMuxClient.dump
    cli = StorageMuxClient.cli
