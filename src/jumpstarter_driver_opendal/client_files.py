"""The client's side of image transfers, shared by every storage client: upload a local file
(checking the hash the device reports), download into a local file (appearing only once complete)
or into memory, and a progress bar for `j` commands."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jumpstarter.client import DriverClient
from jumpstarter.streams import encoding
from jumpstarter_driver_opendal.transfer import (
    Progress,
    TransferError,
    UploadSource,
    detect_encoding,
    download,
    file_sha256,
)

PathLike = str | os.PathLike[str]


def upload_file(
    client: DriverClient,
    path: PathLike,
    write: Callable[[Any], dict[str, Any]],
    current_hash: Callable[[], str | None] | None,
    *,
    compression: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Send the local file `path` through `write(handle)` and check the sha256 the driver reports
    against the content sent; returns {"size", "sha256", "skipped"}.

    A file already compressed (gzip, xz, bz2, zstd, recognised by its first bytes) travels as it is
    and is decompressed on the exporter; otherwise `compression` compresses on the wire. With
    `current_hash` (the device's present sha256), an uncompressed image whose hash matches is not
    sent again."""
    source_path = Path(path)
    if not source_path.is_file():
        raise FileNotFoundError(f"{source_path}: no such file")
    file_encoding = detect_encoding(source_path)
    expected: str | None = None
    if file_encoding is None and current_hash is not None:
        expected = file_sha256(source_path)
        if current_hash() == expected:
            size = source_path.stat().st_size
            if progress is not None:
                progress(size, size)
            return {"size": size, "sha256": expected, "skipped": True}
    source = UploadSource(source_path, file_encoding, progress, hash_content=expected is None)
    options = {"content_encoding": file_encoding} if file_encoding else {"compression": compression}
    with client.resource(source, **options) as handle:
        result = dict(write(handle))
    expected = expected or source.digest.hexdigest()
    if result.get("sha256") != expected:
        raise TransferError(
            f"{source_path}: the device holds sha256 {result.get('sha256')} after writing, expected {expected}"
        )
    return {**result, "skipped": False}


def download_file(
    client: DriverClient,
    method: str,
    request: dict[str, Any],
    path: PathLike,
    *,
    compression: str | None = None,
    progress: Progress | None = None,
) -> int:
    """Download through `method` into the local file `path` (compressed with `compression` if
    given); the file appears only once complete. Returns the bytes received."""
    target = Path(path)
    compress = encoding.compressor(compression) if compression else None
    fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:

            def sink(chunk: bytes) -> None:
                f.write(compress.feed(chunk) if compress is not None else chunk)

            size = download(client, method, request, sink, progress)
            if compress is not None:
                f.write(compress.finish())
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return size


def download_bytes(client: DriverClient, method: str, request: dict[str, Any]) -> bytes:
    """Download through `method` into memory."""
    buffer = io.BytesIO()
    download(client, method, request, buffer.write)
    return buffer.getvalue()


@contextmanager
def progress_bar(description: str) -> Iterator[Progress | None]:
    """A rich progress bar on stderr when it is a terminal (None otherwise), for `j` commands."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=Console(file=sys.stderr),
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update
