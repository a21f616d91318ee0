"""The `j` command tree, built from the exporter's driver tree.

A driver client with a `cli()` method provides its own click command; any other driver gets a
group with one generated command per exported method, its arguments taken from the method's
signature (carried in the report's `jumpstarter.dev/methods` label).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

METHODS_LABEL = "jumpstarter.dev/methods"
TYPES: dict[str, click.ParamType] = {"int": click.INT, "float": click.FLOAT, "str": click.STRING, "bool": click.BOOL}


def _parse(value: Any, type_name: str) -> Any:
    if type_name in TYPES or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _print(result: Any) -> None:
    if result is None:
        return
    if isinstance(result, bytes):
        sys.stdout.buffer.write(result)
        sys.stdout.flush()
    elif isinstance(result, str):
        click.echo(result)
    else:
        from google.protobuf.json_format import MessageToJson

        from jumpstarter.wire.values import encode

        try:
            click.echo(json.dumps(result, default=str))
        except TypeError:
            click.echo(MessageToJson(encode(result, False)))


def method_command(client: Any, name: str, info: dict[str, Any], help_text: str | None) -> click.Command:
    """A click command calling one exported method."""
    params: list[click.Parameter] = []
    names = []
    for pname, ptype, required, default in info.get("params", []):
        names.append((pname, ptype))
        click_type = TYPES.get(ptype, click.STRING)
        if required:
            params.append(click.Argument([pname], type=click_type))
        else:
            params.append(
                click.Option(
                    [f"--{pname.replace('_', '-')}", pname], type=click_type, default=default, show_default=True
                )
            )
    kind = info.get("kind", "unary")

    def callback(**kwargs: Any) -> None:
        args = [_parse(kwargs[p], t) for p, t in names]
        if kind == "streaming":
            for item in client.streamingcall(name, *args):
                _print(item)
        elif kind == "stream":
            _pipe(client, name)
        else:
            _print(client.call(name, *args))

    return click.Command(name.replace("_", "-"), params=params, callback=callback, help=help_text or None)


def _pipe(client: Any, name: str) -> None:
    """Connect stdin/stdout to a byte stream method."""
    import threading

    with client.stream(name) as stream:

        def feed() -> None:
            source = sys.stdin.buffer
            while chunk := source.read1(65536) if hasattr(source, "read1") else source.read(65536):
                stream.send(chunk)
            stream.send_eof()

        threading.Thread(target=feed, daemon=True).start()
        for chunk in stream:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()


def command_for(client: Any, name: str) -> click.Command | None:
    """The `j` command of one driver client (None for placeholders of missing clients)."""
    from jumpstarter.client.base import StubDriverClient

    if isinstance(client, StubDriverClient):
        return None
    custom = getattr(type(client), "cli", None)
    if callable(custom):
        command = client.cli()
        command.name = name
        if client.description:
            command.help = client.description
        return command
    group = click.Group(name, help=client.description or f"{name} driver")
    methods = json.loads(client.labels.get(METHODS_LABEL, "{}") or "{}")
    for method, info in methods.items():
        group.add_command(method_command(client, method, info, client.methods_description.get(method)))
    for child_name, child in client.children.items():
        command = command_for(child, child_name)
        if command is not None:
            group.add_command(command)
    return group


def build_cli(root: Any) -> click.Group:
    """The `j` group: the root's own methods and one subcommand per child."""
    group = command_for(root, "j")
    assert isinstance(group, click.Group)
    group.help = "Control the drivers of the exporter this shell is attached to."
    return group
