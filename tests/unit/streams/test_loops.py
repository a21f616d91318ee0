"""The relaying processes' event loop: uvloop unless switched off, and grpc.aio works on it."""

from __future__ import annotations

import asyncio

import anyio
import grpc
import pytest

from jumpstarter.streams import loops

uvloop = pytest.importorskip("uvloop")


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_run_uses_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loops.ENV, raising=False)
    assert loops.run(_loop_type()) is uvloop.Loop
    assert anyio.run(_loop_type, backend_options=loops.anyio_options()) is uvloop.Loop


@pytest.mark.parametrize("value", ["0", "false", "off", " No "])
def test_switched_off_keeps_asyncios_loop(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(loops.ENV, value)
    assert loops.loop_factory() is None
    assert loops.anyio_options() == {}
    assert not issubclass(loops.run(_loop_type()), uvloop.Loop)


def test_grpc_aio_call_on_the_relaying_loop() -> None:
    async def roundtrip() -> bytes:
        def echo(request: bytes, context: object) -> bytes:
            return request

        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(echo)  # no (de)serializers: bytes
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Echo", {"Call": handler}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/t.Echo/Call", None, None)
                answer: bytes = await call(b"ping", timeout=10)
                return answer
        finally:
            await server.stop(None)

    assert loops.run(roundtrip()) == b"ping"
