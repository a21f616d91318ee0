"""Option groups shared by several commands (names follow upstream)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def exporter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--exporter ALIAS` / `--exporter-config FILE` (mutually exclusive)."""
    func = click.option(
        "--exporter-config",
        "exporter_config",
        type=click.Path(dir_okay=False),
        default=None,
        help="Path of an exporter config file.",
    )(func)
    func = click.option(
        "--exporter",
        "exporter",
        default=None,
        metavar="ALIAS",
        help="Alias of an exporter config (see `jmp config exporter list`).",
    )(func)
    return func


def exporter_path(exporter: str | None, exporter_config: str | None) -> tuple[str, Any]:
    """(display name, path) of the selected exporter config, or an error explaining how to pick one."""
    from pathlib import Path

    from jumpstarter.config import paths

    if exporter and exporter_config:
        raise click.UsageError("give either --exporter or --exporter-config, not both")
    if exporter_config:
        return Path(exporter_config).stem, Path(exporter_config)
    searched = ", ".join(str(d) for d in paths.exporter_dirs())
    known = sorted({alias for directory in paths.exporter_dirs() for alias in paths.aliases_in(directory)})
    if exporter:
        found = paths.find_exporter(exporter)
        if found is None:
            from jumpstarter.config.loading import ConfigNotFoundError

            have = f"exporter configs there: {', '.join(known)}" if known else "there are no exporter configs"
            raise ConfigNotFoundError(
                f"no exporter config named {exporter!r} (looked in {searched}); {have}; "
                f"create it with `jmp config exporter create {exporter}`"
            )
        return exporter, found
    if known:
        raise click.UsageError(
            f"no exporter selected: pass --exporter ALIAS (configured: {', '.join(known)}) or "
            "--exporter-config FILE, or create another with `jmp config exporter create ALIAS`"
        )
    raise click.UsageError(
        f"no exporter selected and no exporter configs found (looked in {searched}): create one with "
        "`jmp config exporter create ALIAS`, add drivers under `export:` with `jmp config exporter edit ALIAS`, "
        "then pass --exporter ALIAS (or pass --exporter-config FILE)"
    )
