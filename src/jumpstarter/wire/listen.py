"""Binding a gRPC server to a TCP address, with a one-line error when the address is taken.

grpcio raises a bare `RuntimeError` ("Failed to bind ...; set GRPC_VERBOSITY=debug ...") and logs
the reason from its C core; the controller, routers and direct-mode exporters want an `OSError`
naming the address and the reason instead, so the CLI prints one line and exits with a clear code.
"""

from __future__ import annotations

import errno
import socket
from typing import Any


def add_port(server: Any, address: str, credentials: Any = None) -> int:
    """Bind `server` (a `grpc.aio.Server`) to `address` (`host:port`, port 0 picks one), with TLS
    when `credentials` are given; returns the bound port. OSError when it cannot listen there."""
    check_free(address)
    try:
        if credentials is not None:
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address} (address in use or not available)")
    return int(port)


def check_free(address: str) -> None:
    """Raise OSError naming the reason when `address` is taken (`Address already in use`) or not
    ours to bind (`Permission denied`); other addresses and failures are left to grpc."""
    host, _, port_text = address.rpartition(":")
    if not port_text.isdigit() or int(port_text) == 0 or address.startswith("unix:"):
        return
    try:
        infos = socket.getaddrinfo(
            host.strip("[]") or None, int(port_text), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, UnicodeError):
        return
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc does: TIME_WAIT is no conflict
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    raise OSError(f"cannot listen on {address}: {exc.strerror}") from None
                # anything else (say, no IPv6 here) is grpc's to judge
