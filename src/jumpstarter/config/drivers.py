"""From an exporter config's `export` mapping to a tree of driver instances.

Two steps: `plan_driver_tree` resolves every `type`, checks constructor arguments and follows
every `ref` (all errors surface here, before any driver touches hardware), then
`build_driver_tree` instantiates the plan children first.

A ``{ref: "a.b"}`` entry places the *same* driver instance that ``a.b`` names at a second spot in
the tree. The exporter then reports that instance twice (same UUID, a different parent and name),
which is what upstream's `Proxy` puts on the wire, and calls through either name reach one object.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from jumpstarter.driver.base import Driver
from jumpstarter.errors import ConfigurationError

if TYPE_CHECKING:
    from jumpstarter.config.exporter import DriverInstance
    from jumpstarter.config.loading import Source

#: Entry point group mapping a driver name (usable as `type:`) to `module:Class`.
ENTRY_POINT_GROUP = "jumpstarter.drivers"
#: Drivers shipped with Jumpstarter, known even when the entry points are not installed.
BUILTIN_DRIVERS: dict[str, str] = {"Composite": "jumpstarter_driver_composite.driver:Composite"}
#: Constructor arguments the framework sets; a `config:` mapping may not.
RESERVED_ARGUMENTS = frozenset({"children", "description", "methods_description", "uuid", "resources"})

TreePath = tuple[str, ...]


@dataclass(slots=True)
class PlannedDriver:
    """One driver instance to create: its class, keyword arguments and children (by tree path)."""

    path: TreePath
    type_name: str
    cls: type[Driver]
    kwargs: dict[str, Any]
    children: dict[str, TreePath] = field(default_factory=dict)


def installed_drivers() -> dict[str, str]:
    """Driver names usable as `type:` and their ``module:Class`` targets (built-ins + entry points)."""
    found = dict(BUILTIN_DRIVERS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found[entry.name] = entry.value
    return dict(sorted(found.items()))


def _describe_installed(installed: Mapping[str, str]) -> str:
    names = ", ".join(f"{name} ({target.replace(':', '.')})" for name, target in installed.items())
    return f"installed drivers: {names or 'none'}; a dotted import path `package.module.Class` works too"


def _unknown_type(type_name: str, reason: str = "") -> ConfigurationError:
    installed = installed_drivers()
    candidates = [*installed, *(target.replace(":", ".") for target in installed.values())]
    close = difflib.get_close_matches(type_name, candidates, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    why = f" ({reason})" if reason else ""
    listing = _describe_installed(installed)
    return ConfigurationError(f"unknown driver type {type_name!r}{why}{hint}; {listing}")


def resolve_driver_class(type_name: str) -> type[Driver]:
    """The driver class a `type:` string names: an entry point name or a dotted import path."""
    target = installed_drivers().get(type_name)
    if target is None:
        if ":" in type_name:
            target = type_name
        elif "." in type_name:
            module_name, _, attr = type_name.rpartition(".")
            target = f"{module_name}:{attr}"
        else:
            raise _unknown_type(type_name)
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(f"{exc.name}.")):
            raise _unknown_type(type_name, f"no module named {exc.name!r}") from None
        raise ConfigurationError(f"driver type {type_name!r}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:
        failure = f"importing {module_name} failed: {exc!r}"
        raise ConfigurationError(f"driver type {type_name!r}: {failure}") from exc
    found: Any = module
    for part in attr.split("."):
        if not hasattr(found, part):
            raise _unknown_type(type_name, f"{module_name} has no {attr!r}")
        found = getattr(found, part)
    if not (isinstance(found, type) and issubclass(found, Driver)):
        raise ConfigurationError(f"driver type {type_name!r} names {found!r}, which is not a Driver class")
    return found


def check_arguments(
    type_name: str, cls: type[Driver], config: Mapping[str, Any]
) -> tuple[str, list[str]] | None:
    """What is wrong with passing `config` to `cls`: (message, offending keys), or None when
    nothing is. Catches keys it does not accept, missing required keys, and framework-reserved keys."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no introspectable signature: let the constructor decide
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = [n for n, p in parameters.items() if p.kind in keyword and n not in RESERVED_ARGUMENTS]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    listing = ", ".join(accepted) or "no arguments"
    reserved = [k for k in config if k in RESERVED_ARGUMENTS]
    if reserved:
        return (
            f"`config` of driver {type_name} may not set {', '.join(reserved)}: children, description and "
            "methods_description go beside `type`; uuid and resources belong to Jumpstarter",
            reserved,
        )
    unknown = [] if takes_any else [k for k in config if k not in accepted]
    if unknown:
        return (
            f"driver {type_name} ({cls.__qualname__}) does not accept {', '.join(unknown)}; "
            f"it accepts: {listing}",
            unknown,
        )
    empty = inspect.Parameter.empty
    missing = [n for n in accepted if parameters[n].default is empty and n not in config]
    if missing:
        return (
            f"driver {type_name} ({cls.__qualname__}) needs {', '.join(missing)} in `config`; "
            f"it accepts: {listing}",
            [],
        )
    return None


def yaml_loc(path: TreePath, *tail: str) -> list[str]:
    """The location of tree node `path` in the exporter config file, for error messages."""
    loc = ["export"]
    for depth, name in enumerate(path):
        if depth:
            loc.append("children")
        loc.append(name)
    return [*loc, *tail]


class _Planner:
    """Walks the `export` mapping depth first, following refs, recording creation order."""

    def __init__(self, export: Mapping[str, DriverInstance], source: Source | None) -> None:
        self.source = source
        self.nodes: dict[TreePath, DriverInstance] = {}
        self._flatten(export, ())
        self.steps: list[PlannedDriver] = []
        self.resolved: dict[TreePath, TreePath] = {}  # tree path -> path of the node whose instance it uses
        self.visiting: list[TreePath] = []

    def _flatten(self, entries: Mapping[str, DriverInstance], prefix: TreePath) -> None:
        for name, node in entries.items():
            self.nodes[(*prefix, name)] = node
            self._flatten(node.children or {}, (*prefix, name))

    def error(self, path: TreePath, tail: tuple[str, ...], message: str) -> ConfigurationError:
        """A `ConfigurationError` located at field `tail` of tree node `path`."""
        loc = yaml_loc(path, *tail)
        field_name = ".".join(loc)
        where = f"{self.source.where(loc)}: " if self.source is not None else ""
        return ConfigurationError(f"{where}{field_name}: {message}")

    def visit(self, path: TreePath) -> TreePath:
        """Plan node `path` (and what it contains or refers to); returns the node whose instance it uses."""
        if path in self.resolved:
            return self.resolved[path]
        if path in self.visiting:
            cycle = [*self.visiting[self.visiting.index(path):], path]
            shown = " -> ".join(".".join(p) for p in cycle)
            culprit = self.visiting[-1]
            raise self.error(culprit, ("ref",), f"ref cycle: {shown}")
        self.visiting.append(path)
        node = self.nodes[path]
        if node.ref is not None:
            target = tuple(node.ref.split("."))
            if target not in self.nodes:
                known = ", ".join(".".join(p) for p in self.nodes if self.nodes[p].ref is None)
                raise self.error(path, ("ref",), f"ref {node.ref!r} points nowhere; entries are: {known}")
            result = self.visit(target)
        else:
            self._plan(path, node)
            result = path
        self.visiting.pop()
        self.resolved[path] = result
        return result

    def _plan(self, path: TreePath, node: DriverInstance) -> None:
        type_name = node.type or "Composite"
        try:
            cls = resolve_driver_class(type_name)
        except ConfigurationError as exc:
            raise self.error(path, ("type",) if node.type else (), str(exc)) from exc.__cause__
        config = dict(node.config or {})
        problem = check_arguments(type_name, cls, config)
        if problem is not None:
            message, offending = problem
            raise self.error(path, ("config", *offending[:1]), message)
        kwargs = config
        if node.description is not None:
            kwargs["description"] = node.description
        if node.methods_description:
            kwargs["methods_description"] = dict(node.methods_description)
        children = {name: self.visit((*path, name)) for name in node.children or {}}
        self.steps.append(PlannedDriver(path, type_name, cls, kwargs, children))


def plan_driver_tree(
    export: Mapping[str, DriverInstance], *, source: Source | None = None
) -> list[PlannedDriver]:
    """Resolve and check the whole tree without creating drivers; steps come children first and
    end with the root Composite (path ``()``). Raises `ConfigurationError` naming file, line, field."""
    planner = _Planner(export, source)
    top = {name: planner.visit((name,)) for name in export}
    composite = resolve_driver_class("Composite")
    planner.steps.append(PlannedDriver((), "Composite", composite, {}, top))
    return planner.steps


def build_driver_tree(export: Mapping[str, DriverInstance], *, source: Source | None = None) -> Driver:
    """Create the drivers of `export` under a root Composite and return the root."""
    built: dict[TreePath, Driver] = {}
    for step in plan_driver_tree(export, source=source):
        kwargs = dict(step.kwargs)
        if step.children:
            kwargs["children"] = {name: built[target] for name, target in step.children.items()}
        try:
            built[step.path] = step.cls(**kwargs)
        except Exception as exc:
            loc = yaml_loc(step.path)
            where = f"{source.where(loc)}: " if source is not None and step.path else ""
            raise ConfigurationError(
                f"{where}{'.'.join(loc)}: creating driver {step.type_name} failed: {exc}"
            ) from exc
    return built[()]
