"""Option groups shared by several commands (names follow upstream)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def exporter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--exporter ALIAS` / `--exporter-config FILE` (mutually exclusive)."""
    func = click.option("--exporter-config", "exporter_config", type=click.Path(dir_okay=False), default=None,
                        help="Path of an exporter config file.")(func)
    func = click.option("--exporter", "exporter", default=None, metavar="ALIAS",
                        help="Alias of an exporter config (see `jmp config exporter list`).")(func)
    return func


def exporter_path(exporter: str | None, exporter_config: str | None) -> tuple[str, Any]:
    """(display name, path) of the selected exporter config, or a UsageError explaining how to pick one."""
    from pathlib import Path

    if exporter and exporter_config:
        raise click.UsageError("give either --exporter or --exporter-config, not both")
    if exporter_config:
        return Path(exporter_config).stem, Path(exporter_config)
    if exporter:
        from jumpstarter.config import paths

        return exporter, paths.find_exporter(exporter)
    raise click.UsageError(
        "no exporter selected: pass --exporter ALIAS or --exporter-config FILE "
        "(create one with `jmp config exporter create ALIAS`)"
    )
