"""`JumpstarterTest`, the base class upstream users write their device tests with.

    from jumpstarter_testing.pytest import JumpstarterTest

    class TestBoard(JumpstarterTest):
        selector = "board=rpi4"

        def test_power(self, client):
            client.power.on()

Inside `jmp shell` (or with a target given to the pytest plugin) `client` is that exporter's root
client; otherwise the class leases a device matching `selector` (distributed mode). The fixture
is class-scoped; with the plugin the device itself is shared by the whole session.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest


class JumpstarterTest:
    """Base class for device tests: a class-scoped `client` fixture and a `selector` attribute."""

    __jumpstarter_test__: ClassVar[bool] = True
    #: Label selector of the device to lease when not inside `jmp shell` ("k=v,k2=v2").
    selector: ClassVar[str] = ""
    #: Upstream's older spelling of `selector`, as a dict.
    filter_labels: ClassVar[dict[str, str]] = {}

    def _client(self_or_cls: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
        """The root client of the device's driver tree."""
        from jumpstarter.testing.classes import class_client

        with class_client(request) as client:
            yield client

    # pytest 9 deprecates class-scoped fixtures that are instance methods; older ones know only those
    if pytest.version_tuple >= (9,):
        client = pytest.fixture(scope="class", name="client")(classmethod(_client))  # type: ignore[arg-type]
    else:  # pragma: no cover - depends on the installed pytest
        client = pytest.fixture(scope="class", name="client")(_client)
    del _client
