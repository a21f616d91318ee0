"""The router's data port, with real processes: end-to-end TLS sessions meet there and are spliced;
tokens are checked as on RouterService.Stream; a lease's connections end with it; `--data-address
off` sends the same TLS sessions over RouterService.Stream; a plaintext client still works.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from jumpstarter.client.client import client_from_path
from jumpstarter.client.lease import ControllerSession, LeaseTunnel, serve_lease
from jumpstarter.config.client import ClientConfig
from jumpstarter.streams.dataplane import DataPortError, data_endpoint, open_data_connection
from tests.integration.conftest import Cli, wait_until
from tests.integration.test_controller import controller, create_clients, exporter


@contextmanager
def leased(cli: Cli, *controller_options: str) -> Iterator[tuple[str, ClientConfig]]:
    """A controller, exporter rpi1 and a lease of alice's on it: (lease name, alice's config)."""
    with controller(cli, "127.0.0.1:0", *controller_options):
        create_clients(cli, "alice")
        with exporter(cli, "rpi1", "board=rpi"):
            created = cli.jmp("create", "lease", "--client", "alice", "-l", "board=rpi", "--duration", "10m",
                              "-o", "name")
            assert created.returncode == 0, created.stderr
            yield created.stdout.strip(), ClientConfig.from_file(cli.config_home / "clients" / "alice.yaml")


@contextmanager
def tunnel(config: ClientConfig, lease: str, path: Path) -> Iterator[tuple[LeaseTunnel, Any]]:
    """The lease served on a unix socket at `path` (as `jmp shell` does), and a portal."""
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal("asyncio") as portal:
        session = portal.call(ControllerSession, config)
        routed = LeaseTunnel(session, lease)
        try:
            with portal.wrap_async_context_manager(serve_lease(routed, str(path))):
                yield routed, portal
        finally:
            portal.call(session.close)


async def _token(config: ClientConfig, lease: str, data_plane: bool = True) -> str:
    session = ControllerSession(config)
    try:
        _, token = await session.dial(lease, 10, data_plane)
        return token
    finally:
        await session.close()


async def _meet(endpoint: str, token: str) -> str:
    """Present `token` at the data port; "paired" or the router's refusal."""
    try:
        sock, _ = await open_data_connection(endpoint, token, 10)
    except DataPortError as exc:
        return str(exc)
    sock.close()
    return "paired"


def test_tls_sessions_meet_at_the_data_port_and_end_with_the_lease(cli: Cli) -> None:
    with leased(cli) as (name, config):
        path = cli.tmp / "lease.sock"
        with tunnel(config, name, path) as (routed, portal):
            assert Path(f"{path}.tls").is_file()  # the client side speaks TLS to the exporter
            with client_from_path(str(path), portal) as client:
                assert client.lamp.call("on", 42) == "on at 42%"
                assert routed.routes["data port"] == 1 and routed.routes["stream"] == 0
                # a plaintext client (as upstream's) goes over RouterService.Stream
                plain = socket.socket(socket.AF_UNIX)
                plain.connect(str(path))
                plain.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                wait_until(lambda: routed.routes["stream"] == 1, what="plaintext connection routed")
                plain.close()

                assert cli.jmp("delete", "leases", name, "--client", "alice").returncode == 0
                from jumpstarter.errors import JumpstarterError

                def cut() -> bool:
                    try:
                        client.lamp.call("on", 1)
                    except JumpstarterError:
                        return True
                    return False

                wait_until(cut, what="calls fail once the lease ended")


def test_data_port_checks_tokens_like_the_stream_service(cli: Cli) -> None:
    with leased(cli) as (name, config):
        assert data_endpoint(asyncio.run(_token(config, name, data_plane=False))) is None  # only when asked

        token = asyncio.run(_token(config, name))
        endpoint = data_endpoint(token)
        assert endpoint is not None
        assert asyncio.run(_meet(endpoint, token)) == "paired"  # with the exporter's side
        assert "already used" in asyncio.run(_meet(endpoint, token))
        assert "unauthenticated" in asyncio.run(_meet(endpoint, token[:-4] + "AAAA"))

        unused = asyncio.run(_token(config, name))
        assert cli.jmp("delete", "leases", name, "--client", "alice").returncode == 0
        assert "refused" in asyncio.run(_meet(endpoint, unused))


@pytest.mark.parametrize("how", ["off"])
def test_without_a_data_port_tls_sessions_go_over_the_stream_service(cli: Cli, how: str) -> None:
    with leased(cli, "--data-address", how) as (name, config):
        assert data_endpoint(asyncio.run(_token(config, name))) is None
        path = cli.tmp / "lease.sock"
        with tunnel(config, name, path) as (routed, portal), client_from_path(str(path), portal) as client:
            assert Path(f"{path}.tls").is_file()
            assert client.lamp.call("on", 7) == "on at 7%"
            assert routed.routes == {"stream": 1}


def test_a_bad_or_busy_data_address_stops_the_controller_clearly(cli: Cli) -> None:
    from tests.integration.conftest import assert_clean_failure

    data = str(cli.tmp / "data")
    bad = cli.jmp("controller", "run", "--address", "127.0.0.1:0", "--data-dir", data, "--data-address", "x")
    assert_clean_failure(bad, "data port must be [HOST:]PORT or off, not 'x'")
    assert bad.returncode == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = cli.jmp("controller", "run", "--address", "127.0.0.1:0", "--data-dir", data,
                       "--data-address", f"127.0.0.1:{taken.getsockname()[1]}")
    assert_clean_failure(busy, "cannot open the router data port", "Address already in use")
    assert busy.returncode == 1  # as for the controller's own port
