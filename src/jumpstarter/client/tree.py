"""Building the tree of driver clients from an exporter's GetReport answer."""

from __future__ import annotations

import logging
from typing import Any

from jumpstarter.client.base import DriverClient, StubDriverClient
from jumpstarter.client.connection import Connection
from jumpstarter.client.importing import import_client_class
from jumpstarter.errors import MissingDriverClientError

log = logging.getLogger("jumpstarter.client")
CLIENT_LABEL = "jumpstarter.dev/client"
NAME_LABEL = "jumpstarter.dev/name"


def build_tree(
    report: Any, connection: Connection, *, allow: list[str] | tuple[str, ...] = (), unsafe: bool = False
) -> DriverClient:
    """Instantiate a client per reported driver, link children to parents, return the root."""
    by_uuid: dict[str, Any] = {}
    pending = list(report.reports)
    order: list[Any] = []
    known: set[str] = set()
    # parents before children, whatever order the exporter sent them in
    while pending:
        progressed = False
        for item in list(pending):
            parent = item.parent_uuid if item.HasField("parent_uuid") else None
            if parent is None or parent in known or parent not in {r.uuid for r in report.reports}:
                order.append(item)
                known.add(item.uuid)
                pending.remove(item)
                progressed = True
        if not progressed:
            raise ValueError("exporter report has a parent cycle")
    root: DriverClient | None = None
    for item in order:
        labels = dict(item.labels)
        common = {
            "uuid": item.uuid,
            "labels": labels,
            "connection": connection,
            "description": item.description if item.HasField("description") else None,
            "methods_description": dict(item.methods_description),
        }
        class_path = labels.get(CLIENT_LABEL, "jumpstarter.client.DriverClient")
        try:
            cls = import_client_class(class_path, allow, unsafe)
            client = cls(**common)
        except MissingDriverClientError as exc:
            log.warning("%s: %s", labels.get(NAME_LABEL, item.uuid), exc)
            client = StubDriverClient(**common)
            client.reason = str(exc)
        by_uuid[item.uuid] = client
        parent = item.parent_uuid if item.HasField("parent_uuid") else None
        if parent in by_uuid:
            by_uuid[parent].children[labels.get(NAME_LABEL, item.uuid)] = client
        elif root is None or item.uuid == report.uuid:
            root = client
    if report.uuid in by_uuid:
        root = by_uuid[report.uuid]
    if root is None:
        raise ValueError("exporter reported no drivers")
    return root
