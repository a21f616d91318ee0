"""Resources: a client hands bytes (a path, bytes, a file) to a driver call, optionally compressed."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from jumpstarter.client import DriverClient
from jumpstarter.common.utils import serve, serve_async
from jumpstarter.driver import Driver, export
from jumpstarter.errors import StreamClosedError
from jumpstarter.streams import encoding

#: Partly compressible, not a multiple of any chunk size.
PAYLOAD = os.urandom(64 * 1024) * 40 + os.urandom(12345)
ENCODINGS = ["gzip", "xz", "bz2", "zstd"]
COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "xz": lzma.compress,
    "bz2": bz2.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


def digest(data: bytes) -> list[Any]:
    return [len(data), hashlib.sha256(data).hexdigest()]


@dataclass(kw_only=True)
class Storage(Driver):
    """Reads resources the way a flasher would."""

    @export
    async def sha256(self, handle: Any) -> list[Any]:
        """Length and sha256 of everything the resource delivers."""
        hasher = hashlib.sha256()
        length = 0
        async with self.resource(handle) as stream:
            async for chunk in stream:
                hasher.update(chunk)
                length += len(chunk)
        return [length, hasher.hexdigest()]

    @export
    async def head(self, handle: Any, size: int) -> bytes:
        """The first `size` bytes; the rest is never read."""
        async with self.resource(handle) as stream:
            data = b""
            while len(data) < size:
                data += await stream.receive()
        return data[:size]


@pytest.fixture(scope="module")
def client() -> Iterator[DriverClient]:
    with serve(Storage()) as root:
        yield root


@pytest.fixture
def payload_file(tmp_path: Path) -> Path:
    path = tmp_path / "image.bin"
    path.write_bytes(PAYLOAD)
    return path


def test_this_installation_supports_every_encoding() -> None:
    assert sorted(encoding.supported()) == sorted(ENCODINGS)


@pytest.mark.parametrize("compression", [None, *ENCODINGS])
def test_bytes(client: DriverClient, compression: str | None) -> None:
    with client.resource(PAYLOAD, compression=compression) as handle:
        assert client.call("sha256", handle) == digest(PAYLOAD)


@pytest.mark.parametrize("compression", [None, *ENCODINGS])
def test_file_path(client: DriverClient, payload_file: Path, compression: str | None) -> None:
    with client.resource(payload_file, compression=compression) as handle:
        assert client.call("sha256", handle) == digest(PAYLOAD)


def test_file_path_as_str(client: DriverClient, payload_file: Path) -> None:
    with client.resource(str(payload_file)) as handle:
        assert client.call("sha256", handle) == digest(PAYLOAD)


def test_file_object(client: DriverClient, payload_file: Path) -> None:
    with payload_file.open("rb") as f, client.resource(f, compression="gzip") as handle:
        assert client.call("sha256", handle) == digest(PAYLOAD)


def test_in_memory_file_object(client: DriverClient) -> None:
    with client.resource(io.BytesIO(PAYLOAD)) as handle:
        assert client.call("sha256", handle) == digest(PAYLOAD)


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_empty(client: DriverClient, compression: str | None) -> None:
    with client.resource(b"", compression=compression) as handle:
        assert client.call("sha256", handle) == digest(b"")


@pytest.mark.parametrize("content_encoding", ENCODINGS)
def test_already_compressed_file(client: DriverClient, tmp_path: Path, content_encoding: str) -> None:
    """The driver reads the decompressed bytes of a file that is compressed on disk."""
    path = tmp_path / f"image.bin.{content_encoding}"
    path.write_bytes(COMPRESS[content_encoding](PAYLOAD))
    with client.resource(path, content_encoding=content_encoding) as handle:
        assert client.call("sha256", handle) == digest(PAYLOAD)


def test_driver_reading_only_the_start(client: DriverClient) -> None:
    big = PAYLOAD * 4
    with client.resource(big) as handle:
        assert client.call("head", handle, 1000) == big[:1000]
    with client.resource(PAYLOAD) as handle:  # nothing got stuck
        assert client.call("sha256", handle) == digest(PAYLOAD)


def test_handle_can_be_used_once(client: DriverClient) -> None:
    with client.resource(b"once") as handle:
        assert client.call("sha256", handle) == digest(b"once")
        with pytest.raises(FileNotFoundError, match="already used"):
            client.call("sha256", handle)


def test_made_up_handle(client: DriverClient) -> None:
    fake = {"kind": "client_stream", "uuid": "00000000-0000-0000-0000-000000000000"}
    with pytest.raises(FileNotFoundError, match="unknown"):
        client.call("sha256", fake)


def test_not_a_handle(client: DriverClient) -> None:
    with pytest.raises(ValueError, match="not a client stream resource handle"):
        client.call("sha256", {"kind": "something_else"})


def test_compression_and_content_encoding_together_are_refused(client: DriverClient) -> None:
    with pytest.raises(ValueError, match="either"):
        with client.resource(PAYLOAD, compression="gzip", content_encoding="gzip"):
            pass


def test_unsupported_compression_is_refused(client: DriverClient) -> None:
    with pytest.raises(ValueError, match="unsupported content encoding 'lz4'"):
        with client.resource(PAYLOAD, compression="lz4"):
            pass


def test_unsupported_content_encoding_is_refused_by_the_exporter(client: DriverClient) -> None:
    with pytest.raises(ValueError, match="unsupported content encoding 'lz4'"):
        with client.resource(PAYLOAD, content_encoding="lz4"):
            pass


class FailingReader:
    """A file whose device goes away after the first read."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, size: int) -> bytes:
        self.reads += 1
        if self.reads == 1:
            return b"x" * 1000
        raise OSError("USB stick removed")


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (possibly nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def test_upload_failing_midway_is_not_taken_for_the_whole_resource(client: DriverClient) -> None:
    """The driver must not see a truncated upload as a complete one (and flash half an image)."""
    with pytest.raises(Exception) as upload_failure:
        with client.resource(FailingReader()) as handle:
            # StreamClosedError while reading, or FileNotFoundError if the upload was gone before the
            # driver opened it; never a digest of the first 1000 bytes
            with pytest.raises((StreamClosedError, FileNotFoundError)):
                client.call("sha256", handle)
    assert any(isinstance(e, OSError) and "USB stick removed" in str(e) for e in leaves(upload_failure.value))
    with client.resource(PAYLOAD) as handle:  # the exporter is fine afterwards
        assert client.call("sha256", handle) == digest(PAYLOAD)


@pytest.mark.parametrize(
    ("source", "error"),
    [(12345, TypeError), ("/nonexistent/image.bin", FileNotFoundError)],
    ids=["not-a-source", "missing-file"],
)
def test_bad_source_fails_before_the_upload_starts(client: DriverClient, source: Any, error: type) -> None:
    with pytest.raises(error):
        with client.resource(source):
            pytest.fail("no handle for a source that cannot be read")


@pytest.mark.anyio
@pytest.mark.parametrize("compression", [None, "gzip"])
async def test_async_resource(compression: str | None) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(PAYLOAD), 100_000):
            yield PAYLOAD[start : start + 100_000]

    async with serve_async(Storage()) as root:
        async with root.resource_async(chunks(), compression=compression) as handle:
            assert await root.call_async("sha256", handle) == digest(PAYLOAD)


@pytest.mark.parametrize("name", ENCODINGS)
def test_codecs_round_trip_incrementally(name: str) -> None:
    compress, decompress = encoding.compressor(name), encoding.decompressor(name)
    pieces = [PAYLOAD[i : i + 7777] for i in range(0, len(PAYLOAD), 7777)]
    wire = b"".join(compress.feed(p) for p in pieces) + compress.finish()
    out = b"".join(decompress.feed(wire[i : i + 999]) for i in range(0, len(wire), 999))
    assert out + decompress.finish() == PAYLOAD
