"""`jmp version`."""

from __future__ import annotations

import click


@click.command()
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default="text")
def version(output: str) -> None:
    """Print the Jumpstarter version."""
    import json
    import sys
    from importlib.metadata import version as dist_version

    info = {"version": dist_version("jumpstarter"), "python": sys.version.split()[0]}
    if output == "json":
        click.echo(json.dumps(info))
    elif output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(info), nl=False)
    else:
        click.echo(f"Jumpstarter {info['version']} (Python {info['python']})")
