"""Which client classes a client tree may import, and the placeholder it uses otherwise."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from jumpstarter.client import DriverClient, StubDriverClient, client_from_path, client_from_path_async
from jumpstarter.client.importing import import_client_class, is_allowed, package_hint
from jumpstarter.driver import Driver, export
from jumpstarter.errors import MissingDriverClientError
from jumpstarter.exporter.local import local_session

#: Where this module's client class lives, as an exporter would name it.
FANCY_PATH = f"{__name__}.FancyClient"
MISSING_PATH = "jumpstarter_driver_nonexistent.client.GhostClient"


@dataclass(kw_only=True)
class FancyClient(DriverClient):
    """A vendor's client class: a friendly method over a driver call."""

    def hello(self) -> str:
        return self.call("hello")


@dataclass(kw_only=True)
class Fancy(Driver):
    """A driver whose client class lives outside the built-in allow-list."""

    @classmethod
    def client(cls) -> str:
        return FANCY_PATH

    @export
    def hello(self) -> str:
        return "hi"


@dataclass(kw_only=True)
class Ghost(Driver):
    """A driver naming a client class that is not installed."""

    @classmethod
    def client(cls) -> str:
        return MISSING_PATH

    @export
    def hello(self) -> str:
        return "boo"


@dataclass(kw_only=True)
class Plain(Driver):
    """A driver with the default client."""

    @export
    def hello(self) -> str:
        return "plain"


@contextmanager
def connect(root: Driver, **kwargs: Any) -> Iterator[DriverClient]:
    """Serve `root` and open a client tree with the given allow-list options."""
    with start_blocking_portal("asyncio") as portal:
        with portal.wrap_async_context_manager(local_session(root)) as path:
            with client_from_path(path, portal, **kwargs) as client:
                yield client


def tree() -> Plain:
    return Plain(children={"fancy": Fancy(), "ghost": Ghost(), "plain": Plain()})


def test_client_outside_allow_list_becomes_a_stub(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="jumpstarter.client"), connect(tree()) as root:
        assert type(root.fancy) is StubDriverClient
        with pytest.raises(MissingDriverClientError) as info:
            root.fancy.hello()
        message = str(info.value)
        assert FANCY_PATH in message
        assert "not in the allow-list" in message
        assert "JMP_DRIVERS_ALLOW='tests.*'" in message
        assert "UNSAFE" in message
        assert any(FANCY_PATH in record.getMessage() for record in caplog.records)
        # the rest of the tree is unaffected
        assert root.call("hello") == "plain"
        assert root.plain.call("hello") == "plain"


def test_stub_refuses_calls_of_every_style() -> None:
    with connect(tree()) as root:
        for use in (lambda: root.fancy.call("hello"), lambda: root.fancy.anything):
            with pytest.raises(MissingDriverClientError, match="FancyClient"):
                use()


@pytest.mark.anyio
async def test_stub_refuses_async_calls() -> None:
    async with local_session(tree()) as path, client_from_path_async(path) as root:
        with pytest.raises(MissingDriverClientError, match="FancyClient"):
            await root.fancy.call_async("hello")
        assert await root.plain.call_async("hello") == "plain"


def test_missing_client_class_names_the_package_to_install() -> None:
    with connect(tree()) as root:
        assert type(root.ghost) is StubDriverClient
        with pytest.raises(MissingDriverClientError) as info:
            root.ghost.call("hello")
    message = str(info.value)
    assert MISSING_PATH in message
    assert "not installed" in message
    assert "'jumpstarter-driver-nonexistent'" in message


@pytest.mark.parametrize("pattern", [FANCY_PATH, "tests.*", "tests.unit.client.*", "*FancyClient"])
def test_client_allowed_by_glob_is_the_real_class(pattern: str) -> None:
    with connect(tree(), allow=[pattern]) as root:
        assert type(root.fancy) is FancyClient
        assert root.fancy.hello() == "hi"


def test_unsafe_allows_every_client_class() -> None:
    with connect(tree(), unsafe=True) as root:
        assert type(root.fancy) is FancyClient
        assert root.fancy.hello() == "hi"
        assert type(root.ghost) is StubDriverClient  # unsafe cannot install packages


def test_children_of_a_stub_stay_reachable() -> None:
    with connect(Fancy(children={"plain": Plain()})) as root:
        assert type(root) is StubDriverClient
        assert root.plain.call("hello") == "plain"


@pytest.mark.parametrize(
    ("path", "allow", "unsafe", "expected"),
    [
        ("jumpstarter.client.DriverClient", (), False, True),
        ("jumpstarter_driver_power.client.PowerClient", (), False, True),
        ("jumpstarterx.Client", (), False, False),
        ("vendor.client.X", (), False, False),
        ("vendor.client.X", ("vendor.*",), False, True),
        ("vendor.client.X", ("other.*",), False, False),
        ("vendor.client.X", ("Vendor.*",), False, False),
        ("vendor.client.X", (), True, True),
    ],
)
def test_is_allowed(path: str, allow: tuple[str, ...], unsafe: bool, expected: bool) -> None:
    assert is_allowed(path, allow, unsafe) is expected


def test_package_hint() -> None:
    assert package_hint("jumpstarter_driver_can.client.CanClient") == "jumpstarter-driver-can"


def test_import_client_class_refuses_non_classes() -> None:
    with pytest.raises(MissingDriverClientError, match="not a class"):
        import_client_class(f"{__name__}.FANCY_PATH", unsafe=True)
