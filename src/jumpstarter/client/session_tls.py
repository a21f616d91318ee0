"""The client's end of end-to-end TLS sessions: a certificate for the lease, and the sidecar file
that tells whoever connects to the lease's socket to speak TLS with it.

`serve_lease` asks the controller for a client certificate valid for the lease (when the lease's
exporter serves TLS sessions) and writes it next to the socket, as `<socket>.tls` (JSON, mode
0600: `key`, `cert`, `ca` PEM and `server_name`). `Connection` reads that file and opens a mutual
TLS channel through the socket, so the router in between carries only ciphertext.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jumpstarter.wire.session_tls import SESSION_SERVER_NAME, request_certificate

if TYPE_CHECKING:
    from jumpstarter.client.lease import ControllerSession

log = logging.getLogger("jumpstarter.client.session_tls")
SIDECAR_SUFFIX = ".tls"


@dataclass(slots=True, frozen=True)
class SessionTLS:
    """What a client needs for a TLS session with a lease's exporter (PEM strings)."""

    key: str
    cert: str
    ca: str
    server_name: str = SESSION_SERVER_NAME


async def prepare(session: ControllerSession, lease_name: str) -> SessionTLS | None:
    """A client certificate for `lease_name`; None when the controller does not issue them or the
    lease's exporter does not serve TLS sessions. Failures raise (our exception types)."""
    import grpc

    from jumpstarter.client.controller import translate

    try:
        issued = await request_certificate(session.channel, session.metadata, lease_name)
    except grpc.RpcError as exc:
        raise translate(exc, session.endpoint) from None
    if issued is None:
        log.debug("controller %s issues no session certificates", session.endpoint)
        return None
    if not issued.exporter_tls:
        log.debug("the exporter of lease %s serves no TLS sessions", lease_name)
        return None
    return SessionTLS(issued.key_pem, issued.certificate_pem, issued.ca_pem)


def sidecar_path(socket_path: str | Path) -> Path:
    """Where the TLS settings of the socket at `socket_path` are kept."""
    return Path(f"{socket_path}{SIDECAR_SUFFIX}")


def write_sidecar(socket_path: str | Path, tls: SessionTLS) -> Path:
    """Write `<socket_path>.tls` (mode 0600, atomically); returns its path."""
    from jumpstarter.config.paths import SECRET_MODE, atomic_write

    path = sidecar_path(socket_path)
    atomic_write(path, json.dumps(asdict(tls)), SECRET_MODE)
    return path


def read_sidecar(socket_path: str | Path) -> SessionTLS | None:
    """The TLS settings kept next to the socket at `socket_path`; None when there are none."""
    try:
        document = json.loads(sidecar_path(socket_path).read_text())
        return SessionTLS(document["key"], document["cert"], document["ca"], document["server_name"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable session TLS settings %s: %s", sidecar_path(socket_path), exc)
        return None
