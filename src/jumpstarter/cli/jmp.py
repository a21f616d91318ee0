"""`jmp`: the Jumpstarter command line. Subcommands are imported only when used."""

from __future__ import annotations

import click

from jumpstarter.cli.lazy import LazyGroup

COMMANDS = {
    "run": ("jumpstarter.cli.run:run", "Run an exporter (serves a driver tree)."),
    "shell": ("jumpstarter.cli.shell:shell", "Spawn a shell (or run a command) with access to an exporter."),
    "config": ("jumpstarter.cli.config_cmd:config", "Manage client and exporter configurations."),
    "driver": ("jumpstarter.cli.driver_cmd:driver", "Inspect installed drivers."),
    "controller": ("jumpstarter.cli.controller_cmd:controller", "Run a controller (distributed mode)."),
    "admin": ("jumpstarter.cli.admin_cmd:admin", "Manage clients and exporters of a controller."),
    "get": ("jumpstarter.cli.leases_cmd:get", "List exporters or leases on the controller."),
    "create": ("jumpstarter.cli.leases_cmd:create", "Create a lease on the controller."),
    "update": ("jumpstarter.cli.leases_cmd:update", "Change a lease on the controller."),
    "delete": ("jumpstarter.cli.leases_cmd:delete", "Release leases on the controller."),
    "login": ("jumpstarter.cli.login_cmd:login", "Log in to a controller (OIDC) and write the client config."),
    "auth": ("jumpstarter.cli.auth_cmd:auth", "Show and renew the tokens of client configs."),
    "version": ("jumpstarter.cli.version:version", "Print the Jumpstarter version."),
    "completion": ("jumpstarter.cli.completion:completion", "Print a shell completion script."),
}
ALIASES = {
    "sh": "shell", "s": "shell", "conf": "config", "ver": "version", "v": "version",
    "a": "admin", "g": "get", "c": "create", "del": "delete", "d": "delete",
}


@click.group(cls=LazyGroup, lazy=COMMANDS, aliases=ALIASES, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
    default="WARNING",
    show_default=True,
    help="Log level of this process.",
)
@click.option("--log-format", type=click.Choice(["auto", "json", "text"]), default="auto", help="Log format (jmp run).")
@click.pass_context
def jmp(ctx: click.Context, log_level: str, log_format: str) -> None:
    """Jumpstarter: drive devices on your desk, in a lab, or behind a controller."""
    import logging

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(log_level.upper())
    logging.getLogger().setLevel(log_level.upper())
    ctx.ensure_object(dict)["log_format"] = log_format


def main() -> None:
    """Entry point of the `jmp` program."""
    jmp(prog_name="jmp")
