"""`@export` / `@exportstream`, what a driver reports, and the driver lifecycle in a session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from jumpstarter.common.utils import serve
from jumpstarter.driver import CallKind, Driver, export, exportstream
from jumpstarter.driver.base import CLIENT_LABEL, NAME_LABEL
from jumpstarter.driver.decorators import call_kind


@dataclass(kw_only=True)
class Kinds(Driver):
    """One exported method of each shape."""

    @export
    def unary(self) -> int:
        """Return one.

        More text that is not part of the one-line help."""
        return 1

    @export
    async def unary_async(self) -> int:
        return 2

    @export()
    def with_parentheses(self) -> int:
        return 3

    @export
    def generator(self) -> Iterator[int]:
        yield 1

    @export
    async def generator_async(self) -> AsyncIterator[int]:
        yield 1

    @exportstream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        yield None

    def helper(self) -> int:
        return 0


@dataclass(kw_only=True)
class MoreKinds(Kinds):
    """Exported methods are inherited."""

    @export
    def extra(self) -> int:
        return 4


KINDS = {
    "unary": CallKind.UNARY,
    "unary_async": CallKind.UNARY,
    "with_parentheses": CallKind.UNARY,
    "generator": CallKind.STREAMING,
    "generator_async": CallKind.STREAMING,
    "connect": CallKind.STREAM,
}


def test_exported_methods_and_their_kinds() -> None:
    assert Kinds.exported_methods() == KINDS


def test_exported_methods_are_inherited() -> None:
    assert MoreKinds.exported_methods() == {**KINDS, "extra": CallKind.UNARY}


def test_undecorated_methods_are_not_exported() -> None:
    assert call_kind(Kinds.helper) is None
    assert call_kind(Kinds.reset) is None
    assert call_kind(Kinds.close) is None


def test_decorators_return_the_function_itself() -> None:
    def method(self: Any) -> int:
        return 5

    assert export(method) is method
    assert exportstream(method) is method


@pytest.mark.parametrize("decorator", [export, exportstream])
def test_decorators_refuse_non_functions(decorator: Any) -> None:
    with pytest.raises(TypeError):
        decorator(42)


@dataclass(kw_only=True)
class Power(Driver):
    """A leaf with its own client class and labels."""

    driver_type: ClassVar[str] = "power"
    voltage: float = 5.0

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_power.client.PowerClient"

    def extra_labels(self) -> dict[str, str]:
        return {"voltage": str(self.voltage)}

    @export
    def on(self) -> None:
        """Switch the power on."""


@dataclass(kw_only=True)
class Lifecycle(Driver):
    """Counts reset/close calls."""

    events: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.events.append("reset")

    async def close(self) -> None:
        self.events.append("close")

    @export
    def events_so_far(self) -> list[str]:
        return list(self.events)


def test_report_of_a_tree() -> None:
    power = Power(labels={"site": "lab1"}, description="bench PSU")
    root = Kinds(children={"power": power}, methods_description={"unary": "Configured help."})
    reports = {r.uuid: r for r in (d.report(parent, name) for d, parent, name in root.enumerate())}

    top = reports[str(root.uuid)]
    assert top.parent_uuid is None
    assert top.labels[NAME_LABEL] == "root"
    assert top.labels[CLIENT_LABEL] == "jumpstarter.client.DriverClient"
    assert top.methods_description["unary"] == "Configured help."
    assert top.methods_description["generator"] == ""

    child = reports[str(power.uuid)]
    assert child.parent_uuid == str(root.uuid)
    expected_labels = {
        "site": "lab1",
        "voltage": "5.0",
        CLIENT_LABEL: "jumpstarter_driver_power.client.PowerClient",
        NAME_LABEL: "power",
    }
    assert child.labels | expected_labels == child.labels
    assert child.description == "bench PSU"
    assert child.methods_description == {"on": "Switch the power on."}


def test_method_help_is_the_first_docstring_line() -> None:
    assert Kinds().report().methods_description["unary"] == "Return one."


def test_enumerate_is_parents_first() -> None:
    leaf = Kinds()
    middle = Kinds(children={"leaf": leaf})
    root = Kinds(children={"middle": middle, "other": Power()})
    order = [(d, parent, name) for d, parent, name in root.enumerate()]
    assert [name for _, _, name in order] == ["root", "middle", "leaf", "other"]
    assert order[2][1] is middle


def test_report_reaches_the_client() -> None:
    power = Power(description="bench PSU")
    with serve(Kinds(children={"power": power}), labels={"lab": "desk"}) as client:
        assert client.power.uuid == str(power.uuid)
        assert client.power.description == "bench PSU"
        assert client.power.labels["voltage"] == "5.0"
        assert client.power.methods_description == {"on": "Switch the power on."}
        assert client.methods_description["unary"] == "Return one."


def test_drivers_are_reset_on_entry_and_closed_on_exit() -> None:
    driver = Lifecycle()
    with serve(driver) as client:
        assert client.call("events_so_far") == ["reset"]
        client.reset()
        assert client.call("events_so_far") == ["reset", "reset"]
    assert driver.events == ["reset", "reset", "close"]


def test_driver_logger_carries_the_driver() -> None:
    driver = Power(log_level="debug")
    assert driver.logger.logger.name == "driver.Power"
    assert driver.logger.extra == {"jmp_uuid": str(driver.uuid), "jmp_driver": driver}
