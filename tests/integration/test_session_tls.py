"""End-to-end TLS sessions with real processes: a `jmp run` exporter under a controller gets its
session certificate and serves its TLS socket; a client certificate for the exporter's current
lease (from the same controller) is admitted there, one for an ended lease is not."""

from __future__ import annotations

import asyncio
import re
import signal

import grpc
import pytest
from google.protobuf import empty_pb2

from jumpstarter.client.lease import ControllerSession
from jumpstarter.client.session_tls import SessionTLS, prepare
from jumpstarter.config.client import ClientConfig
from jumpstarter.protocol.v1 import jumpstarter_pb2_grpc
from tests.integration.conftest import Cli, wait_until
from tests.integration.test_controller import controller, create_clients, exporter


async def certificate(config: ClientConfig, lease: str) -> SessionTLS | None:
    session = ControllerSession(config)
    try:
        return await prepare(session, lease)
    finally:
        await session.close()


async def get_report(path: str, tls: SessionTLS) -> str:
    credentials = grpc.ssl_channel_credentials(tls.ca.encode(), tls.key.encode(), tls.cert.encode())
    options = (("grpc.ssl_target_name_override", tls.server_name),)
    async with grpc.aio.secure_channel(f"unix:{path}", credentials, options=options) as channel:
        report = await jumpstarter_pb2_grpc.ExporterServiceStub(channel).GetReport(empty_pb2.Empty(), timeout=10)
        return str(report.uuid)


def outcome(path: str, tls: SessionTLS) -> str:
    """`ok`, or the status code and message a GetReport over TLS ends with."""
    try:
        asyncio.run(get_report(path, tls))
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    return "ok"


def lease_for(cli: Cli) -> str:
    created = cli.jmp("create", "lease", "--client", "alice", "-l", "board=tls", "--duration", "5m", "-o", "name")
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def test_the_exporter_admits_the_current_leases_client_over_tls(cli: Cli) -> None:
    with controller(cli):
        create_clients(cli, "alice")
        with exporter(cli, "tlsboard", "board=tls"):
            log = cli.tmp / "tlsboard.log"
            found = wait_until(
                lambda: re.search(r"serving end-to-end TLS sessions on (\S+)", log.read_text()), what="TLS socket"
            )
            tls_socket = found.group(1)
            config = ClientConfig.from_file(cli.config_home / "clients" / "alice.yaml")
            first = lease_for(cli)
            tls = asyncio.run(certificate(config, first))
            assert tls is not None  # the exporter asked for its certificate: it serves TLS sessions
            # admitted once the exporter has taken the lease up (it hears of it on its Status stream)
            wait_until(lambda: outcome(tls_socket, tls) == "ok", what=f"a TLS call during lease {first}")
            released = cli.jmp("delete", "lease", first, "--client", "alice")
            assert released.returncode == 0, released.stderr
            second = lease_for(cli)

            def refused_during_second() -> str | None:
                text = outcome(tls_socket, tls)
                return text if f"serves lease default/{second}" in text else None

            refused = wait_until(refused_during_second, what=f"lease {first}'s certificate refused during {second}")
            assert refused.startswith("PERMISSION_DENIED"), refused
            assert f"lease:default/{first}" in refused


@pytest.mark.slow
def test_a_restarted_controller_keeps_its_session_ca_and_learns_the_exporter_serves_tls(cli: Cli) -> None:
    from tests.integration.test_controller_restart import controller_on

    with controller(cli) as first:
        port = first.port
        create_clients(cli, "alice")
        with exporter(cli, "tlsboard", "board=tls") as proc:
            log = cli.tmp / "tlsboard.log"
            wait_until(lambda: "serving end-to-end TLS sessions" in log.read_text(), what="TLS socket")
            ca = (first.data_dir / "session-ca.crt").read_text()
            first.proc.send_signal(signal.SIGTERM)
            assert first.proc.wait(20) == 0
            with controller_on(cli, port):
                assert (first.data_dir / "session-ca.crt").read_text() == ca
                config = ClientConfig.from_file(cli.config_home / "clients" / "alice.yaml")
                lease = lease_for(cli)
                # the exporter asks again once it has reconnected, and keeps its one TLS server
                tls = wait_until(lambda: asyncio.run(certificate(config, lease)), what="exporter_tls after restart")
                assert tls.ca == ca
                assert proc.poll() is None
                assert log.read_text().count("serving end-to-end TLS sessions") == 1
