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


def build_report(driver: Driver, parent: Driver | None, name: str) -> DriverReport:
    """Build the report of one driver instance."""
    labels = {**driver.labels, **driver.extra_labels(), CLIENT_LABEL: driver.client(), NAME_LABEL: name}
    return DriverReport(
        uuid=str(driver.uuid),
        parent_uuid=str(parent.uuid) if parent is not None else None,
        labels=labels,
        description=driver.description,
        methods_description=method_help(driver),
    )
