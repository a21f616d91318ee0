"""Values shared by the storage drivers and their clients."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Literal

#: Hash algorithms `hash()` accepts.
HashAlgo = Literal["md5", "sha256"]

_PARTITION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def check_partition(partition: str | None) -> str:
    """A partition name usable as a file name ("default" for None); raises ValueError otherwise."""
    if partition is None:
        return "default"
    if not isinstance(partition, str) or not _PARTITION.fullmatch(partition):
        raise ValueError(f"invalid partition name {partition!r}: use letters, digits, '.', '_' and '-'")
    return partition


class EntryMode(enum.Enum):
    """What a storage path is."""

    FILE = "file"
    DIR = "dir"
    UNKNOWN = "unknown"

    def is_file(self) -> bool:
        """Whether the path is a file."""
        return self is EntryMode.FILE

    def is_dir(self) -> bool:
        """Whether the path is a directory."""
        return self is EntryMode.DIR


@dataclass(frozen=True, slots=True)
class Metadata:
    """What `stat()` tells about a storage path."""

    mode: EntryMode
    content_length: int
    etag: str | None = None
    content_type: str | None = None
    last_modified: str | None = None  # ISO 8601

    @classmethod
    def from_wire(cls, values: dict[str, Any]) -> Metadata:
        """Build from the dict the driver returns."""
        return cls(
            mode=EntryMode(values.get("mode", "unknown")),
            content_length=int(values.get("content_length") or 0),
            etag=values.get("etag"),
            content_type=values.get("content_type"),
            last_modified=values.get("last_modified"),
        )


class MuxState(enum.Enum):
    """Where a storage mux connects its storage."""

    OFF = "off"
    HOST = "host"
    DUT = "dut"
