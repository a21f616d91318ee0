"""The router on a real gRPC server (unix socket): pairing by token, verbatim relay both ways,
back-pressure, closing a lease's streams, refusals. Stream tokens and router choice by table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from jumpstarter.controller.auth import TokenAuthority
from jumpstarter.controller.model import Identity, Kind
from jumpstarter.controller.router import Router
from jumpstarter.controller.router_process import WatchedLeases
from jumpstarter.controller.routers import AttachedRouter, pick
from jumpstarter.controller.store.sqlite import SqliteStore
from jumpstarter.controller.stream_tokens import StreamTokenVerifier, mint
from jumpstarter.errors import UnauthenticatedError
from jumpstarter.protocol.admin.v1 import routers_pb2
from jumpstarter.protocol.v1 import router_pb2, router_pb2_grpc

DATA, PING, GOAWAY, RST = (router_pb2.FRAME_TYPE_DATA, router_pb2.FRAME_TYPE_PING, router_pb2.FRAME_TYPE_GOAWAY,
                           router_pb2.FRAME_TYPE_RST_STREAM)
LEASE = "default/lease1"


@pytest.fixture
def authority(tmp_path: Path) -> TokenAuthority:
    return TokenAuthority(SqliteStore.in_directory(tmp_path))


# ---- stream tokens -----------------------------------------------------------------------------

def test_stream_tokens_verify_and_are_not_identity_tokens(authority: TokenAuthority) -> None:
    token, grant = mint(authority, "default", "lease1")
    verifier = StreamTokenVerifier(authority.verification_keys())
    assert verifier.verify(token) == grant
    assert grant.lease == LEASE and grant.expiry > time.time() + 30
    with pytest.raises(UnauthenticatedError, match="unauthenticated"):
        authority.verify(token)  # a stream token is no identity token...
    identity = Identity(Kind.CLIENT, "default", "alice")
    authority.store.put_identity(identity)
    with pytest.raises(UnauthenticatedError, match="stream token"):
        verifier.verify(authority.issue(identity)[0])  # ...and an identity token no stream token


def test_stream_tokens_expire_and_need_a_known_key(authority: TokenAuthority, tmp_path: Path) -> None:
    stale, _ = mint(authority, "default", "lease1", window=-120)
    verifier = StreamTokenVerifier(authority.verification_keys())
    with pytest.raises(UnauthenticatedError, match="expired"):
        verifier.verify(stale)
    other = TokenAuthority(SqliteStore.in_directory(tmp_path / "other"))
    with pytest.raises(UnauthenticatedError, match="unknown key"):
        verifier.verify(mint(other, "default", "lease1")[0])
    with pytest.raises(UnauthenticatedError, match="malformed"):
        verifier.verify("not-a-jwt")


# ---- choosing a router -------------------------------------------------------------------------

def _router(name: str, **labels: str) -> AttachedRouter:
    return AttachedRouter(name, f"{name}:8083", labels)


@pytest.mark.parametrize(
    ("routers", "labels", "turn", "chosen"),
    [
        ([], {"site": "a"}, 0, None),
        ([_router("any")], {"site": "a"}, 0, "any"),
        ([_router("b", site="b")], {"site": "a"}, 0, None),  # a router for another site never
        ([_router("any"), _router("a", site="a")], {"site": "a", "board": "x"}, 0, "a"),  # most specific
        ([_router("a1", site="a"), _router("a2", site="a")], {"site": "a"}, 1, "a2"),  # ties take turns
        ([_router("a", site="a"), _router("ab", site="a", board="x")], {"site": "a", "board": "y"}, 0, "a"),
    ],
)
def test_pick(routers: list[AttachedRouter], labels: dict[str, str], turn: int, chosen: str | None) -> None:
    found = pick(routers, labels, turn)
    assert (found.name if found else None) == chosen


# ---- the router on a real server -------------------------------------------------------------

class Harness:
    """A router served on a unix socket, with the lease gate a router process uses."""

    def __init__(self, authority: TokenAuthority, path: str, pairing_timeout: float = 5.0) -> None:
        self.authority = authority
        self.verifier = StreamTokenVerifier(authority.verification_keys())
        self.leases = WatchedLeases()
        self.leases.active.add(LEASE)
        self.router = Router(self.verifier, self.leases, pairing_timeout)
        self.path = path
        self.server = grpc.aio.server(options=(("grpc.max_receive_message_length", 16 << 20),))
        self.server.add_generic_rpc_handlers((self.router.generic_handler(),))
        self.server.add_insecure_port(f"unix://{path}")
        self.channels: list[grpc.aio.Channel] = []

    def token(self, lease: str = "lease1") -> str:
        return mint(self.authority, "default", lease)[0]

    def stream(self, token: str) -> Any:
        """A protobuf-typed Stream call on its own connection."""
        channel = grpc.aio.insecure_channel(f"unix://{self.path}", options=(("grpc.use_local_subchannel_pool", 1),))
        self.channels.append(channel)
        return router_pb2_grpc.RouterServiceStub(channel).Stream(metadata=(("authorization", f"Bearer {token}"),))

    def end_lease(self, lease: str = LEASE) -> None:
        self.leases.apply(routers_pb2.RouterEvent(ended_leases=[lease]), self.router, self.verifier)


@pytest.fixture
async def harness(authority: TokenAuthority, tmp_path: Path) -> AsyncIterator[Harness]:
    running = Harness(authority, str(tmp_path / "router.sock"))
    await running.server.start()
    yield running
    for channel in running.channels:
        await channel.close()
    await running.server.stop(None)


async def code_of(call: Any, within: float = 5.0) -> grpc.StatusCode:
    return await asyncio.wait_for(call.code(), within)


@pytest.mark.anyio
async def test_frames_are_relayed_verbatim_both_ways(harness: Harness) -> None:
    token = harness.token()
    client, exporter = harness.stream(token), harness.stream(token)
    sent = [(DATA, b"hello"), (PING, b"keepalive"), (DATA, b"\x00" * 100_000), (GOAWAY, b"")]
    for kind, payload in sent:
        await client.write(router_pb2.StreamRequest(payload=payload, frame_type=kind))
    await client.done_writing()
    received = [await exporter.read() for _ in sent]
    assert [(f.frame_type, f.payload) for f in received] == sent
    await exporter.write(router_pb2.StreamRequest(payload=b"answer", frame_type=DATA))
    await exporter.write(router_pb2.StreamRequest(frame_type=RST))
    await exporter.done_writing()
    assert [(f.frame_type, f.payload) for f in [await client.read(), await client.read()]] == [
        (DATA, b"answer"), (RST, b"")]
    assert await code_of(client) is grpc.StatusCode.OK
    assert await code_of(exporter) is grpc.StatusCode.OK
    assert harness.router.pairs_total == 1 and harness.router.active_sides == 0


@pytest.mark.anyio
async def test_tokens_are_single_use_and_need_an_active_lease(harness: Harness) -> None:
    token = harness.token()
    first, second = harness.stream(token), harness.stream(token)
    await first.write(router_pb2.StreamRequest(payload=b"x"))
    assert (await second.read()).payload == b"x"  # paired
    third = harness.stream(token)
    assert await code_of(third) is grpc.StatusCode.PERMISSION_DENIED
    assert "already used" in await third.details()

    bad = harness.stream(token[:-4] + "AAAA")
    assert await code_of(bad) is grpc.StatusCode.UNAUTHENTICATED

    harness.end_lease()
    assert await code_of(first) is grpc.StatusCode.ABORTED  # its streams close at once...
    assert await code_of(second) is grpc.StatusCode.ABORTED
    assert "lease default/lease1 ended" in await first.details()
    late = harness.stream(harness.token())  # ...and fresh tokens for it are refused
    assert await code_of(late) is grpc.StatusCode.PERMISSION_DENIED
    assert "not active" in await late.details()


@pytest.mark.anyio
async def test_a_vanishing_side_takes_its_peer_down(harness: Harness) -> None:
    token = harness.token()
    client, exporter = harness.stream(token), harness.stream(token)
    await client.write(router_pb2.StreamRequest(payload=b"x"))
    await exporter.read()
    client.cancel()
    assert await code_of(exporter) is grpc.StatusCode.UNAVAILABLE
    assert "went away" in await exporter.details()


@pytest.mark.anyio
async def test_the_first_side_waits_only_so_long(authority: TokenAuthority, tmp_path: Path) -> None:
    harness = Harness(authority, str(tmp_path / "r.sock"), pairing_timeout=0.2)
    await harness.server.start()
    try:
        token = harness.token()
        alone = harness.stream(token)
        assert await code_of(alone) is grpc.StatusCode.DEADLINE_EXCEEDED
        late = harness.stream(token)  # the token was abandoned with it
        assert await code_of(late) is grpc.StatusCode.PERMISSION_DENIED
    finally:
        await harness.server.stop(None)


@pytest.mark.anyio
async def test_a_slow_reader_holds_the_writer_back(harness: Harness) -> None:
    token = harness.token()
    writer, reader = harness.stream(token), harness.stream(token)
    chunk = b"y" * (1 << 20)
    accepted = 0
    blocked: asyncio.Task[Any] | None = None
    while accepted < (256 << 20):
        write = asyncio.ensure_future(writer.write(router_pb2.StreamRequest(payload=chunk)))
        done, _ = await asyncio.wait({write}, timeout=1.0)  # (cancelling a write would cancel the call)
        if not done:
            blocked = write
            break
        accepted += len(chunk)
    # what the router and the HTTP/2 windows hold is bounded: far less than the 256 MiB offered
    assert blocked is not None and accepted < (64 << 20), accepted
    received = 0
    while received < accepted + len(chunk):  # reading lets the blocked write through
        received += len((await asyncio.wait_for(reader.read(), 5.0)).payload)
    await asyncio.wait_for(blocked, 5.0)
    writer.cancel()
    reader.cancel()
