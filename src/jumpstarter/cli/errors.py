"""Exit codes and friendly messages by exception *type* (never by message text)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from jumpstarter import errors

F = TypeVar("F", bound=Callable[..., Any])

#: Exception type -> exit code. First isinstance match wins.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (errors.ConfigurationError, 2),
    (errors.UnauthenticatedError, 4),
    (errors.PermissionDeniedError, 4),
    (errors.ExporterBusyError, 5),
    (errors.NotFoundError, 7),
    (errors.AlreadyExistsError, 8),
    (errors.LeaseEndedError, 9),
    (errors.ConnectionLostError, 6),
    (ConnectionError, 6),
    (TimeoutError, 6),  # no answer in time: unreachable as far as the user can tell
    (errors.EnvironmentVariableNotSetError, 2),
    (errors.MissingDriverClientError, 3),
    (FileNotFoundError, 2),
    (errors.JumpstarterError, 1),
)


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for an exception."""
    for exc_type, code in EXIT_CODES:
        if isinstance(exc, exc_type):
            return code
    return 1


def friendly(func: F) -> F:
    """Turn our expected errors into a one-line message on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:  # Ctrl-C (or SIGTERM where a command maps it so): what was held is let go
            click.echo("Interrupted", err=True)
            sys.exit(130)
        except (errors.JumpstarterError, OSError, ValueError) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exit_code_for(exc))

    return wrapper  # type: ignore[return-value]
