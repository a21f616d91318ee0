"""Building the driver tree of an exporter config, and serving it over real gRPC."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from jumpstarter.common.utils import serve
from jumpstarter.config.drivers import plan_driver_tree, resolve_driver_class
from jumpstarter.config.exporter import ExporterConfig
from jumpstarter.driver import Driver, export
from jumpstarter.errors import ConfigurationError
from jumpstarter_driver_composite.client import CompositeClient
from jumpstarter_driver_composite.driver import Composite


@dataclass(kw_only=True)
class Counter(Driver):
    """A driver with state, to tell instances apart."""

    start: int = 0
    step: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self.value = self.start

    @export
    def incr(self) -> int:
        """Add one step."""
        self.value += self.step
        return self.value


@dataclass(kw_only=True)
class NeedsPort(Driver):
    """A driver with a required argument."""

    port: str


@dataclass(kw_only=True)
class Fails(Driver):
    """A driver whose constructor rejects its configuration."""

    level: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        raise ValueError(f"level {self.level} is out of range")


class NotADriver:
    """Something importable that is not a driver."""


def type_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


COUNTER = type_of(Counter)


def load(tmp_path: Path, text: str) -> tuple[ExporterConfig, Path]:
    path = tmp_path / "exporter.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return ExporterConfig.from_file(path), path


def build_error(tmp_path: Path, text: str) -> tuple[str, Path]:
    config, path = load(tmp_path, text)
    with pytest.raises(ConfigurationError) as info:
        config.build_drivers()
    return str(info.value), path


def test_nested_tree_with_ref_description_and_methods_description(tmp_path: Path) -> None:
    config, _ = load(
        tmp_path,
        f"""
        export:
          board:
            description: the board under test
            children:
              counter:
                type: {COUNTER}
                config: {{start: 10, step: 2}}
                description: counts things
                methods_description:
                  incr: bump the counter
              nested:
                children:
                  deep:
                    type: {COUNTER}
          shortcut:
            ref: board.counter
        """,
    )
    tree = config.build_drivers()
    assert isinstance(tree, Composite)
    board = tree.children["board"]
    assert isinstance(board, Composite) and board.description == "the board under test"
    counter = board.children["counter"]
    assert isinstance(counter, Counter) and (counter.start, counter.step) == (10, 2)
    assert tree.children["shortcut"] is counter
    assert isinstance(board.children["nested"].children["deep"], Counter)
    report = counter.report(board, "counter")
    assert report.description == "counts things"
    assert report.methods_description == {"incr": "bump the counter"}

    with serve(tree) as client:
        assert isinstance(client, CompositeClient)
        assert client.board.description == "the board under test"
        assert client.board.counter.description == "counts things"
        assert client.board.counter.methods_description["incr"] == "bump the counter"
        assert client.board.counter.call("incr") == 12
        # the ref is the same instance: its state is shared
        assert client.shortcut.call("incr") == 14
        assert client["shortcut"].uuid == client.board.counter.uuid
        assert client.board.nested.deep.call("incr") == 1


def test_upstream_style_type_strings_load(tmp_path: Path) -> None:
    config, _ = load(
        tmp_path,
        """
        export:
          group:
            type: jumpstarter_driver_composite.driver.Composite
            children:
              inner:
                type: Composite
        """,
    )
    tree = config.build_drivers()
    assert type(tree.children["group"]) is Composite
    assert type(tree.children["group"].children["inner"]) is Composite


def test_unknown_type_lists_installed_drivers(tmp_path: Path) -> None:
    message, path = build_error(
        tmp_path,
        """
        export:
          power:
            type: MockPowr
        """,
    )
    assert message.startswith(f"{path}:3: export.power.type: unknown driver type 'MockPowr'")
    assert "installed drivers: Composite (jumpstarter_driver_composite.driver.Composite)" in message


def test_unknown_dotted_type(tmp_path: Path) -> None:
    message, path = build_error(
        tmp_path,
        """
        export:
          group:
            children:
              power:
                type: jumpstarter_driver_nope.driver.Power
        """,
    )
    assert message.startswith(f"{path}:5: export.group.children.power.type: unknown driver type")
    assert "no module named 'jumpstarter_driver_nope'" in message
    assert "installed drivers: Composite" in message


def test_misspelt_class_suggests_the_right_one(tmp_path: Path) -> None:
    typo = "jumpstarter_driver_composite.driver.Compsite"
    message, _ = build_error(tmp_path, f"export:\n  a:\n    type: {typo}\n")
    assert "did you mean 'jumpstarter_driver_composite.driver.Composite'?" in message


def test_entry_point_names_resolve_and_are_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "site" / "fake_drivers-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-drivers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[jumpstarter.drivers]\nCounter = {Counter.__module__}:{Counter.__qualname__}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    assert resolve_driver_class("Counter") is Counter
    config, _ = load(tmp_path, "export:\n  c:\n    type: Counter\n    config: {start: 3}\n")
    tree = config.build_drivers()
    with serve(tree) as client:
        assert client.c.call("incr") == 4
    message, _ = build_error(tmp_path, "export:\n  c:\n    type: Countr\n")
    assert "did you mean 'Counter'?" in message
    assert f"Counter ({Counter.__module__}.Counter)" in message


def test_unknown_constructor_arguments(tmp_path: Path) -> None:
    message, path = build_error(
        tmp_path,
        f"""
        export:
          c:
            type: {COUNTER}
            config:
              start: 1
              stpe: 2
              colour: red
        """,
    )
    assert message.startswith(f"{path}:6: export.c.config.stpe: driver {COUNTER} (Counter) ")
    assert "does not accept stpe, colour;" in message
    assert "it accepts: labels, log_level, start, step" in message


def test_missing_constructor_arguments(tmp_path: Path) -> None:
    message, path = build_error(tmp_path, f"export:\n  serial:\n    type: {type_of(NeedsPort)}\n")
    expected = f"{path}:2: export.serial.config: driver {type_of(NeedsPort)} (NeedsPort) needs port"
    assert message.startswith(expected)


def test_framework_arguments_cannot_be_configured(tmp_path: Path) -> None:
    message, path = build_error(
        tmp_path, f"export:\n  c:\n    type: {COUNTER}\n    config:\n      description: nope\n"
    )
    assert message.startswith(f"{path}:5: export.c.config.description: `config` of driver")
    assert "go beside `type`" in message


def test_constructor_failure_is_a_configuration_error(tmp_path: Path) -> None:
    text = f"export:\n  f:\n    type: {type_of(Fails)}\n    config: {{level: 9}}\n"
    message, path = build_error(tmp_path, text)
    assert message == f"{path}:2: export.f: creating driver {type_of(Fails)} failed: level 9 is out of range"


def test_type_that_is_not_a_driver(tmp_path: Path) -> None:
    message, path = build_error(tmp_path, f"export:\n  x:\n    type: {type_of(NotADriver)}\n")
    assert message.startswith(f"{path}:3: export.x.type: driver type")
    assert "is not a Driver class" in message


def test_dangling_ref(tmp_path: Path) -> None:
    message, path = build_error(
        tmp_path,
        f"""
        export:
          board:
            children:
              power:
                type: {COUNTER}
          alias:
            ref: board.powr
        """,
    )
    assert message.startswith(f"{path}:7: export.alias.ref: ref 'board.powr' points nowhere")
    assert "entries are: board, board.power" in message


def test_ref_cycle_between_refs(tmp_path: Path) -> None:
    message, path = build_error(
        tmp_path,
        """
        export:
          a:
            ref: b
          b:
            ref: c
          c:
            ref: a
        """,
    )
    assert message == f"{path}:7: export.c.ref: ref cycle: a -> b -> c -> a"


def test_ref_to_own_ancestor_is_a_cycle(tmp_path: Path) -> None:
    message, path = build_error(
        tmp_path,
        """
        export:
          board:
            children:
              loop:
                ref: board
        """,
    )
    assert message == f"{path}:5: export.board.children.loop.ref: ref cycle: board -> board.loop -> board"


def test_cycle_through_containment_and_refs(tmp_path: Path) -> None:
    message, _ = build_error(
        tmp_path,
        """
        export:
          x:
            children:
              y: {ref: z}
          z:
            children:
              w: {ref: x}
        """,
    )
    assert "ref cycle: x -> x.y -> z -> z.w -> x" in message


def test_ref_to_ref_resolves_to_the_same_instance(tmp_path: Path) -> None:
    config, _ = load(
        tmp_path,
        f"""
        export:
          first: {{ref: second}}
          second: {{ref: real}}
          real: {{type: {COUNTER}}}
        """,
    )
    tree = config.build_drivers()
    assert tree.children["first"] is tree.children["second"] is tree.children["real"]


def test_plan_creates_nothing_and_orders_children_first(tmp_path: Path) -> None:
    config, _ = load(
        tmp_path,
        f"""
        export:
          board:
            children:
              power: {{type: {COUNTER}}}
          alias: {{ref: board.power}}
        """,
    )
    steps = plan_driver_tree(config.export, source=config.source)
    assert [step.path for step in steps] == [("board", "power"), ("board",), ()]
    assert steps[-1].children == {"board": ("board",), "alias": ("board", "power")}


def test_errors_without_a_file_still_name_the_field() -> None:
    config = ExporterConfig.model_validate({"export": {"p": {"type": "Nope"}}})
    with pytest.raises(ConfigurationError) as info:
        config.build_drivers()
    assert str(info.value).startswith("export.p.type: unknown driver type 'Nope'")


def test_ref_to_a_subtree_is_reachable_under_both_names(tmp_path: Path) -> None:
    config, _ = load(
        tmp_path,
        f"""
        export:
          board:
            children:
              counter: {{type: {COUNTER}}}
          mirror: {{ref: board}}
        """,
    )
    with serve(config.build_drivers()) as client:
        assert client.board.counter.call("incr") == 1
        assert client.mirror.counter.call("incr") == 2
        assert client.mirror.counter.uuid == client.board.counter.uuid
