"""Reports: what an exporter tells clients about each driver instance."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jumpstarter.driver.base import CLIENT_LABEL, NAME_LABEL

if TYPE_CHECKING:
    from jumpstarter.driver.base import Driver


@dataclass(slots=True)
class DriverReport:
    """One driver instance as GetReport describes it."""

    uuid: str
    parent_uuid: str | None
    labels: dict[str, str]
    description: str | None = None
    methods_description: dict[str, str] = field(default_factory=dict)


def method_help(driver: Driver) -> dict[str, str]:
    """Per-method help: the exporter config's `methods_description`, else the docstring's first line."""
    result = {}
    for name in type(driver).exported_methods():
        text = driver.methods_description.get(name)
        if text is None:
            doc = inspect.getdoc(getattr(type(driver), name)) or ""
            text = doc.strip().splitlines()[0] if doc.strip() else ""
        result[name] = text
    for name, text in driver.methods_description.items():
        result.setdefault(name, text)
    return result


#: Label carrying the signatures of exported methods (JSON), used to generate `j` commands.
METHODS_LABEL = "jumpstarter.dev/methods"


def _type_name(annotation: object) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def method_signatures(driver: Driver) -> str:
    """JSON {method: {"kind": ..., "params": [[name, type, required, default]]}} of exported methods."""
    import json

    out: dict[str, object] = {}
    for name, kind in type(driver).exported_methods().items():
        try:
            sig = inspect.signature(getattr(driver, name))
        except (TypeError, ValueError):
            out[name] = {"kind": kind.value, "params": []}
            continue
        params = []
        for p in sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            required = p.default is inspect.Parameter.empty
            default = None if required or not isinstance(p.default, (int, float, str, bool)) else p.default
            params.append([p.name, _type_name(p.annotation), required, default])
        out[name] = {"kind": kind.value, "params": params}
    return json.dumps(out, separators=(",", ":"))


def build_report(driver: Driver, parent: Driver | None, name: str) -> DriverReport:
    """Build the report of one driver instance."""
    labels = {
        **driver.labels,
        **driver.extra_labels(),
        CLIENT_LABEL: driver.client(),
        NAME_LABEL: name,
        METHODS_LABEL: method_signatures(driver),
    }
    return DriverReport(
        uuid=str(driver.uuid),
        parent_uuid=str(parent.uuid) if parent is not None else None,
        labels=labels,
        description=driver.description,
        methods_description=method_help(driver),
    )
