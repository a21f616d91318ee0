"""A click group that imports subcommands only when they run, and accepts upstream's aliases."""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    """Subcommands given as `name -> ("module:attr", "short help")`; aliases map to names."""

    def __init__(
        self,
        *args: Any,
        lazy: dict[str, tuple[str, str]] | None = None,
        aliases: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}
        self.aliases = aliases or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def resolve_name(self, name: str) -> str:
        """The canonical command name for `name` (aliases, singular/plural)."""
        if name in self.lazy or name in self.commands:
            return name
        if name in self.aliases:
            return self.aliases[name]
        for candidate in (name + "s", name.rstrip("s")):
            if candidate in self.lazy or candidate in self.commands:
                return candidate
        return name

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = self.resolve_name(cmd_name)
        if name in self.commands:
            return self.commands[name]
        target = self.lazy.get(name)
        if target is None:
            return None
        module_name, _, attr = target[0].partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        self.commands[name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        rows += [
            (name, cmd.get_short_help_str()) for name, cmd in sorted(self.commands.items()) if name not in self.lazy
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
