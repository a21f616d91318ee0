"""`jmp completion bash|zsh|fish`."""

from __future__ import annotations

import click


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (e.g. `eval "$(jmp completion bash)"`)."""
    from click.shell_completion import get_completion_class

    from jumpstarter.cli.jmp import jmp

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(jmp, {}, "jmp", "_JMP_COMPLETE").source())
