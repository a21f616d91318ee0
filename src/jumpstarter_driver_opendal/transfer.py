"""Moving images between the client and storage drivers.

Uploads (client -> exporter) use resources: `UploadSource` reads a local file in worker threads,
reports progress and hashes what the device will hold. Downloads (exporter -> client) use an
`@exportstream` method speaking a small protocol, because resources only flow towards the
exporter: the client sends one JSON request and end-of-data; the driver answers one JSON header
line (`{"size": N}` or `{"error": "...", "type": "FileNotFoundError"}`), then exactly N bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from jumpstarter.errors import DriverError
from jumpstarter.streams import encoding

#: Chunk size of local file reads and driver-side reads.
CHUNK = 1 << 20
#: Largest download request accepted.
MAX_REQUEST = 1 << 16

#: progress(done, total): bytes done so far and the total (None when unknown).
Progress = Callable[[int, int | None], None]

_MAGIC = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"BZh", "bz2"), (b"\x28\xb5\x2f\xfd", "zstd"))


class TransferError(DriverError):
    """A transfer ended wrong: cut short, or what arrived does not match what was sent."""


def detect_encoding(path: str | Path) -> str | None:
    """The compression of a local file by its magic bytes (gzip, xz, bz2, zstd), or None."""
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def file_sha256(path: str | Path) -> str:
    """sha256 of a local file (blocking; run it in a thread for big files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class UploadSource:
    """A local file read in worker threads as an async iterable of chunks, for `client.resource()`.

    Counts bytes for `progress` and, when `hash_content` is set, hashes the content the device
    will hold (decompressing a compressed file on the side to do so)."""

    path: Path
    file_encoding: str | None = None
    progress: Progress | None = None
    hash_content: bool = False
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0  # content bytes (after decompression)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        total = self.path.stat().st_size
        done = 0
        decompress = encoding.decompressor(self.file_encoding) if self.hash_content and self.file_encoding else None
        f = await anyio.to_thread.run_sync(open, self.path, "rb")
        try:
            while chunk := await anyio.to_thread.run_sync(self._read, f, decompress):
                done += len(chunk)
                if self.progress is not None:
                    self.progress(done, total)
                yield chunk
            if decompress is not None:
                self._account(decompress.finish())
        finally:
            await anyio.to_thread.run_sync(f.close)

    def _read(self, f: BinaryIO, decompress: encoding.Codec | None) -> bytes:
        chunk = f.read(CHUNK)
        if self.hash_content and chunk:
            self._account(decompress.feed(chunk) if decompress is not None else chunk)
        return chunk

    def _account(self, content: bytes) -> None:
        self.digest.update(content)
        self.size += len(content)


# ---- downloads: exporter side ----------------------------------------------------------------
#: Opens what a request names: returns (size, chunks); raises to refuse the request.
Opener = Callable[[dict[str, Any]], Awaitable[tuple[int, AsyncIterator[bytes]]]]


class DownloadStream:
    """The exporter's end of a download: collects the request, then serves header and bytes."""

    def __init__(self, opener: Opener) -> None:
        self._opener = opener
        self._request = bytearray()
        self._requested = anyio.Event()
        self._chunks: AsyncIterator[bytes] | None = None
        self._started = False

    async def send(self, data: bytes) -> None:
        """Request bytes from the client."""
        if self._requested.is_set():
            return
        self._request += data
        if len(self._request) > MAX_REQUEST:
            raise ValueError("download request too large")

    async def send_eof(self) -> None:
        """The request is complete."""
        self._requested.set()

    async def receive(self) -> bytes:
        """The header line first, then the data; `anyio.EndOfStream` after the last byte."""
        if not self._started:
            self._started = True
            await self._requested.wait()
            try:
                request = json.loads(bytes(self._request) or b"{}")
                if not isinstance(request, dict):
                    raise ValueError(f"download request must be a JSON object, got {request!r}")
                size, self._chunks = await self._opener(request)
            except Exception as exc:  # refused: tell the client why, in-band
                return _header({"error": str(exc), "type": type(exc).__name__})
            return _header({"size": size})
        if self._chunks is None:
            raise anyio.EndOfStream
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            self._chunks = None
            raise anyio.EndOfStream from None

    async def aclose(self) -> None:
        """Stop serving (closes the data source)."""
        close = getattr(self._chunks, "aclose", None)
        self._chunks = None
        if close is not None:
            await close()


def _header(values: dict[str, Any]) -> bytes:
    return json.dumps(values).encode() + b"\n"


async def file_chunks(path: Path, start: int = 0) -> AsyncIterator[bytes]:
    """A local file's bytes in chunks read by worker threads."""
    f = await anyio.to_thread.run_sync(open, path, "rb")
    try:
        while chunk := await anyio.to_thread.run_sync(f.read, CHUNK):
            yield chunk
    finally:
        await anyio.to_thread.run_sync(f.close)


# ---- downloads: client side ------------------------------------------------------------------
_ERRORS: dict[str, type[Exception]] = {
    "FileNotFoundError": FileNotFoundError,
    "IsADirectoryError": IsADirectoryError,
    "PermissionError": PermissionError,
    "ValueError": ValueError,
}


def download(
    client: Any,
    method: str,
    request: dict[str, Any],
    sink: Callable[[bytes], object],
    progress: Progress | None = None,
) -> int:
    """Run a download from `client`'s `method` stream, feeding each chunk to `sink`; returns the
    byte count. Raises the driver's refusal (FileNotFoundError, ...) or `TransferError` when the
    data stops short."""
    with client.stream(method) as stream:
        stream.send(json.dumps(request).encode())
        stream.send_eof()
        buffered = b""
        while b"\n" not in buffered:
            try:
                buffered += stream.receive()
            except anyio.EndOfStream:
                raise TransferError("the driver ended the download without answering") from None
            if len(buffered) > MAX_REQUEST:
                raise TransferError("download answer has no header")
        line, _, rest = buffered.partition(b"\n")
        header = json.loads(line)
        if "error" in header:
            raise _ERRORS.get(header.get("type", ""), TransferError)(header["error"])
        size = int(header["size"])
        done = 0
        for piece in itertools.chain([rest] if rest else [], stream):
            sink(piece)
            done += len(piece)
            if progress is not None:
                progress(done, size)
    if done != size:
        raise TransferError(f"download stopped after {done} of {size} bytes")
    return done
