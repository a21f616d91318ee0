"""`SSHWrapper`: SSH settings for a device whose SSH port is reached through its `tcp` child
(a `TcpNetwork`, or any network driver); the client runs the local `ssh` through a port forward."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from jumpstarter.driver import Driver, export
from jumpstarter.errors import ConfigurationError

#: Upstream's default: device host keys change with every reflash, so they are not checked.
DEFAULT_SSH_COMMAND = "ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"


@dataclass(kw_only=True)
class SSHWrapper(Driver):
    """SSH access to the device behind the `tcp` child.

    `default_username` is used unless the command line names a user (`-l`); `ssh_command` is the
    client command line options are added to; the private key is given inline (`ssh_identity`)
    or as a file on the exporter (`ssh_identity_file`), and handed to the client for the session.
    """

    default_username: str = ""
    ssh_command: str = DEFAULT_SSH_COMMAND
    ssh_identity: str | None = None
    ssh_identity_file: str | None = None

    driver_type: ClassVar[str] = "network"

    def __post_init__(self) -> None:
        super().__post_init__()
        if "tcp" not in self.children:
            given = ", ".join(self.children) or "none"
            raise ConfigurationError(
                f"SSHWrapper children.tcp: a `tcp` child (a TcpNetwork to the device's SSH port, or a ref "
                f"to one) is required; children given: {given}"
            )
        if "connect" not in type(self.children["tcp"]).exported_methods():
            raise ConfigurationError(
                f"SSHWrapper children.tcp: {type(self.children['tcp']).__name__} has no `connect` stream; "
                "use a network driver such as TcpNetwork"
            )
        if not isinstance(self.default_username, str):
            raise ConfigurationError(f"SSHWrapper config default_username: expected a string, "
                                     f"got {self.default_username!r}")
        try:
            argv = shlex.split(self.ssh_command) if isinstance(self.ssh_command, str) else []
        except ValueError as exc:
            raise ConfigurationError(
                f"SSHWrapper config ssh_command: cannot split {self.ssh_command!r}: {exc}"
            ) from None
        if not argv:
            raise ConfigurationError(
                f"SSHWrapper config ssh_command: expected a command line, got {self.ssh_command!r}"
            )
        if self.ssh_identity and self.ssh_identity_file:
            raise ConfigurationError("SSHWrapper config ssh_identity, ssh_identity_file: give one of them, not both")
        if self.ssh_identity_file is not None:
            path = Path(self.ssh_identity_file).expanduser()
            if not path.is_file() or not os.access(path, os.R_OK):
                raise ConfigurationError(
                    f"SSHWrapper config ssh_identity_file: {self.ssh_identity_file!r} is not a readable file"
                )

    @classmethod
    def client(cls) -> str:
        """Dotted path of `SSHWrapperClient`."""
        return "jumpstarter_driver_ssh.client.SSHWrapperClient"

    @export
    def get_default_username(self) -> str:
        """The user to log in as when the command line names none."""
        return self.default_username

    @export
    def get_ssh_command(self) -> str:
        """The ssh command line that options are added to."""
        return self.ssh_command

    @export
    def get_ssh_identity(self) -> str | None:
        """The private key (its text), or None when none is configured."""
        if self.ssh_identity is None and self.ssh_identity_file is not None:
            try:
                return Path(self.ssh_identity_file).expanduser().read_text()
            except OSError as exc:
                raise ConfigurationError(
                    f"SSHWrapper config ssh_identity_file: cannot read {self.ssh_identity_file!r}: {exc}"
                ) from None
        return self.ssh_identity
