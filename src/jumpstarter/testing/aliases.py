"""`client` and `driver`: the short names of the plugin's fixtures, registered unless the ini key
`jmp_fixture_aliases = false` turns them off (another plugin may use these names)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture(scope="session")
def client(jumpstarter_client: Any) -> Any:
    """The root client of the exporter's driver tree (same as `jumpstarter_client`)."""
    return jumpstarter_client


@pytest.fixture(scope="session")
def driver(jumpstarter_driver: Callable[[str], Any]) -> Callable[[str], Any]:
    """`driver("power")`: the client of one driver, by (dotted) name (same as `jumpstarter_driver`)."""
    return jumpstarter_driver
