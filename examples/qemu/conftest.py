"""Fixtures for the demo: the board from the surrounding `jmp shell` (local, direct or leased)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

PROMPT = r"root@dut:[^#]*# "


@pytest.fixture(scope="session")
def board() -> Iterator[Any]:
    """The exporter's root client (`board.qemu` is the virtual machine)."""
    if not os.environ.get("JUMPSTARTER_HOST"):
        pytest.skip("run inside `jmp shell --exporter-config examples/qemu/exporter.yaml -- pytest examples/qemu`")
    from jumpstarter.common.utils import env

    with env() as client:
        yield client


@pytest.fixture(scope="session")
def vm(board: Any) -> Any:
    """The QEMU virtual machine."""
    return board.qemu
