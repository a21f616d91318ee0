"""On-the-fly compression of resource streams (gzip, xz, bz2 from the standard library; zstd with
the `zstandard` package)."""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Any, Protocol


#: Encodings this installation can decompress.
def supported() -> list[str]:
    """Names of the encodings available here."""
    names = ["gzip", "xz", "bz2"]
    try:
        import zstandard  # noqa: F401
    except ImportError:
        pass
    else:
        names.append("zstd")
    return names


class Codec(Protocol):
    """An incremental compressor or decompressor."""

    def feed(self, data: bytes) -> bytes: ...
    def finish(self) -> bytes: ...


class _Compressor:
    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def feed(self, data: bytes) -> bytes:
        return self._obj.compress(data)

    def finish(self) -> bytes:
        return self._obj.flush()


class _Decompressor:
    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def feed(self, data: bytes) -> bytes:
        return self._obj.decompress(data)

    def finish(self) -> bytes:
        flush = getattr(self._obj, "flush", None)
        return flush() if flush is not None else b""


def compressor(encoding: str) -> Codec:
    """An incremental compressor for `encoding`."""
    if encoding == "gzip":
        return _Compressor(zlib.compressobj(6, zlib.DEFLATED, 31))
    if encoding == "xz":
        return _Compressor(lzma.LZMACompressor())
    if encoding == "bz2":
        return _Compressor(bz2.BZ2Compressor())
    if encoding == "zstd":
        import zstandard

        return _Compressor(zstandard.ZstdCompressor(level=3).compressobj())
    raise ValueError(f"unsupported content encoding {encoding!r}; supported: {', '.join(supported())}")


def decompressor(encoding: str) -> Codec:
    """An incremental decompressor for `encoding`."""
    if encoding == "gzip":
        return _Decompressor(zlib.decompressobj(47))
    if encoding == "xz":
        return _Decompressor(lzma.LZMADecompressor())
    if encoding == "bz2":
        return _Decompressor(bz2.BZ2Decompressor())
    if encoding == "zstd":
        import zstandard

        return _Decompressor(zstandard.ZstdDecompressor().decompressobj())
    raise ValueError(f"unsupported content encoding {encoding!r}; supported: {', '.join(supported())}")
