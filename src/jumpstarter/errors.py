"""The one exception tree of Jumpstarter.

Every exception here carries a plain message. How each maps onto a gRPC status code lives in
exactly one table, `jumpstarter.wire.status.STATUS_TABLE`, used by both server and client.
"""

from __future__ import annotations


class JumpstarterError(Exception):
    """Base class of every error Jumpstarter raises on purpose."""


class ConfigurationError(JumpstarterError):
    """A configuration file or option is invalid."""


class ArgumentError(JumpstarterError, ValueError):
    """A driver method was called with arguments it does not accept."""


class DriverError(JumpstarterError):
    """A driver failed; drivers may subclass this for their own failures."""


class DriverNotFoundError(JumpstarterError, LookupError):
    """No driver instance with the requested UUID exists on the exporter."""


class MethodNotFoundError(JumpstarterError, LookupError):
    """The driver has no exported method of the requested name (or kind)."""


class ExporterNotReadyError(JumpstarterError):
    """The exporter refuses driver calls in its current state (for example during a hook)."""


class ExporterBusyError(JumpstarterError):
    """The exporter is in use by another client."""


class UnauthenticatedError(JumpstarterError):
    """The credentials presented were missing or wrong."""


class PermissionDeniedError(JumpstarterError):
    """The caller is authenticated but not allowed to do this."""


class NotFoundError(JumpstarterError, LookupError):
    """A named object (lease, exporter, client) does not exist on the controller."""


class AlreadyExistsError(JumpstarterError):
    """A named object (lease, exporter, client) already exists on the controller."""


class ConnectionLostError(JumpstarterError, ConnectionError):
    """The connection to the exporter (or controller) went away."""


class LeaseEndedError(JumpstarterError):
    """The lease has ended (released, expired, or its exporter went away): nothing more to reach."""


class StreamClosedError(JumpstarterError):
    """A byte stream was closed or reset by the other side."""


class MissingDriverClientError(JumpstarterError, ImportError):
    """A driver client class is not installed, or not in the allow-list."""


class EnvironmentVariableNotSetError(JumpstarterError):
    """A required environment variable (such as JUMPSTARTER_HOST) is not set."""


class RemoteError(DriverError):
    """A driver raised an exception whose type cannot be rebuilt on the client.

    `remote_type` names the original exception type.
    """

    def __init__(self, message: str, remote_type: str = "") -> None:
        super().__init__(message)
        self.remote_type = remote_type
