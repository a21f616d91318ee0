"""`jmp driver list`: installed drivers (entry points in group `jumpstarter.drivers`)."""

from __future__ import annotations

import click

from jumpstarter.cli.output import OUTPUT_OPTION, print_items


@click.group()
def driver() -> None:
    """Inspect installed drivers."""


@driver.command(name="list")
@OUTPUT_OPTION
def list_drivers(output: str | None) -> None:
    """List installed drivers."""
    from importlib.metadata import entry_points

    items = []
    for ep in sorted(entry_points(group="jumpstarter.drivers"), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else ""
        items.append({"name": ep.name, "type": ep.value.replace(":", "."), "package": dist})
    print_items(items, ["name", "type", "package"], output)
