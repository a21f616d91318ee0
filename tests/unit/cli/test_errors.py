"""Exit codes by exception type (jumpstarter.cli.errors.EXIT_CODES)."""

from __future__ import annotations

import pytest

from jumpstarter import errors
from jumpstarter.cli.errors import exit_code_for


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.ConfigurationError("bad yaml"), 2),
        (errors.UnauthenticatedError("wrong passphrase"), 4),
        (errors.PermissionDeniedError("not yours"), 4),
        (errors.ExporterBusyError("busy"), 5),
        (errors.ConnectionLostError("gone"), 6),
        (ConnectionRefusedError("refused"), 6),
        (TimeoutError("exporter at 10.0.0.1:1 did not answer in time"), 6),
        (errors.NotFoundError("no lease"), 7),
        (errors.AlreadyExistsError("exists"), 8),
        (errors.LeaseEndedError("expired"), 9),
        (errors.MissingDriverClientError("no client class"), 3),
        (FileNotFoundError("no file"), 2),
        (errors.DriverError("driver said no"), 1),
        (ValueError("anything else"), 1),
    ],
)
def test_exit_codes_by_type(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code
