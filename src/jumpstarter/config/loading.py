"""Reading YAML config files into models, with errors that name the file, line and field.

The file is parsed once into a YAML node graph (which knows the line of every key) and the data
is constructed from that graph; pydantic's error locations are then walked along the graph to
find the line to report.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from jumpstarter.errors import ConfigurationError

M = TypeVar("M", bound=BaseModel)
Loc = Sequence[str | int]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigNotFoundError(ConfigurationError, FileNotFoundError):
    """A config file (or alias) that was asked for does not exist."""


@dataclass(slots=True)
class Source:
    """Where a config came from: its file name and YAML node graph, to point errors at lines."""

    name: str
    node: Any = None  # yaml.Node of the document, None when built in code

    def line(self, loc: Loc) -> int | None:
        """1-based line of the field at `loc` (or of its closest existing parent)."""
        node = self.node
        if node is None:
            return None
        line: int = node.start_mark.line
        for part in loc:
            child = _child(node, part)
            if child is None:
                break
            key, node = child
            line = (key if key is not None else node).start_mark.line
        return line + 1

    def where(self, loc: Loc) -> str:
        """``file:line`` of the field at `loc`, for the front of an error message."""
        line = self.line(loc)
        return f"{self.name}:{line}" if line is not None else self.name


def _child(node: Any, part: str | int) -> tuple[Any, Any] | None:
    """(key node or None, value node) of `part` inside a mapping or sequence node."""
    if isinstance(node, yaml.MappingNode):
        for key, value in reversed(node.value):  # last duplicate wins, as in the loaded data
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def dotted(loc: Loc) -> str:
    """A field location as written in messages: ``export.power.config.port``."""
    return ".".join(str(part) for part in loc) or "(document)"


def parse_yaml(text: str, name: str) -> tuple[Any, Source]:
    """Parse one YAML document; returns the data and its `Source` (raises `ConfigurationError`)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_duplicate_keys(node, name)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        raise ConfigurationError(_describe_yaml_error(exc, name)) from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{name}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return data, Source(name, node)


def _describe_yaml_error(exc: yaml.MarkedYAMLError, name: str) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
    problem = exc.problem or "syntax error"
    context = ""
    if exc.context:
        at = f" at line {exc.context_mark.line + 1}" if exc.context_mark is not None else ""
        context = f" ({exc.context}{at})"
    return f"{where}: invalid YAML: {problem}{context}"


def _check_duplicate_keys(root: Any, name: str) -> None:
    """PyYAML keeps the last of two equal keys silently; a duplicated export name would drop a driver."""
    seen_nodes: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in first:
                        raise ConfigurationError(
                            f"{name}:{line}: duplicate key {key.value!r} (first at line {first[key.value]})"
                        )
                    first[key.value] = line
                pending.append(value)
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)


def load_model(model: type[M], path: str | Path, *, kind: str | None = None) -> M:
    """Read `path` into `model`; any problem raises `ConfigurationError` naming file, line and field.

    `kind` is the value the document's ``kind`` must have (checked first, for a clear message
    when, say, a client config is given where an exporter config belongs).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigNotFoundError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read config file: {exc}") from None
    return validate_text(model, text, str(path), kind=kind)


def validate_text(model: type[M], text: str, name: str, *, kind: str | None = None) -> M:
    """Parse YAML `text` (from file `name`) into `model`, with located error messages."""
    data, source = parse_yaml(text, name)
    if data is None:
        raise ConfigurationError(f"{name}: the config file is empty")
    if isinstance(data, Mapping):
        _check_header(data, source, kind)
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc, source, model)) from None
    attach = getattr(result, "attach_source", None)
    if attach is not None:
        attach(source)
    return result


def _check_header(data: Mapping[str, Any], source: Source, kind: str | None) -> None:
    from jumpstarter.config.common import API_VERSION

    found_kind = data.get("kind")
    if kind is not None and found_kind is not None and found_kind != kind:
        raise ConfigurationError(
            f"{source.where(['kind'])}: kind: expected {kind!r}, found {found_kind!r} "
            f"(is this the right file?)"
        )
    version = data.get("apiVersion")
    if version is not None and version != API_VERSION:
        raise ConfigurationError(
            f"{source.where(['apiVersion'])}: apiVersion: expected {API_VERSION!r}, found {version!r}"
        )


def describe_validation_error(
    exc: ValidationError, source: Source, model: type[BaseModel] | None = None
) -> str:
    """One ``file:line: field: problem`` line per error pydantic found."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        lines.append(f"{source.where(loc)}: {dotted(loc)}: {_problem(error, loc, model)}")
    return "\n".join(lines)


def _problem(error: Mapping[str, Any], loc: tuple[str | int, ...], model: type[BaseModel] | None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1]) if model is not None else None
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown field {loc[-1]!r}{hint}"
    if kind == "missing":
        return "required field is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if kind != "value_error" and (value is None or isinstance(value, str | int | float | bool)):
        message += f", got {value!r}"
    return message


def _fields_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str] | None:
    """The YAML field names of the model found at `loc` below `model`, if one is."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap_optional(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = next(
                (f for n, f in annotation.model_fields.items() if part in (n, f.alias)),
                None,
            )
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) in (dict, Mapping) and isinstance(part, str):
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) in (list, Sequence) and isinstance(part, int):
            annotation = typing.get_args(annotation)[0]
        else:
            return None
    annotation = _unwrap_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or n for n, f in annotation.model_fields.items()]
    return None


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation
