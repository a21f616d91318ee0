"""Printing lists: tables (rich) or `-o json|yaml|name`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

OUTPUT_OPTION = click.option(
    "-o",
    "--output",
    type=click.Choice(["json", "yaml", "name"]),
    default=None,
    help="Machine-readable output instead of a table.",
)


def print_items(items: list[dict[str, Any]], columns: list[str], output: str | None, key: str = "name") -> None:
    """Print `items` as a table, or as JSON / YAML / one name per line."""
    if output == "json":
        click.echo(json.dumps(items, indent=2, default=str))
    elif output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(items, sort_keys=False), nl=False)
    elif output == "name":
        for item in items:
            click.echo(item[key])
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold")
        for column in columns:
            table.add_column(column.upper(), overflow="fold")
        for item in items:
            table.add_row(*("" if item.get(c) is None else str(item[c]) for c in columns))
        # piped output is for grep/awk: never truncate or fold a cell there
        Console(width=None if sys.stdout.isatty() else 1 << 16).print(table)
