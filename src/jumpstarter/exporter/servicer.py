"""gRPC face of a `Session`: ExporterService and the session's RouterService.Stream."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import grpc
from google.protobuf import timestamp_pb2

from jumpstarter.exporter.logging import source_of
from jumpstarter.exporter.session import Session
from jumpstarter.exporter.status import CALLABLE, ExporterStatus
from jumpstarter.protocol.v1 import jumpstarter_pb2 as pb
from jumpstarter.protocol.v1 import jumpstarter_pb2_grpc, router_pb2, router_pb2_grpc
from jumpstarter.streams import resources
from jumpstarter.wire import status as wire_status
from jumpstarter.wire.values import CODEC_KEY, CODEC_USER_AGENT, CODEC_VERSION, decode, encode, encode_batch_values

log = logging.getLogger("jumpstarter.exporter.servicer")

DATA = router_pb2.FRAME_TYPE_DATA
GOAWAY = router_pb2.FRAME_TYPE_GOAWAY
RST = router_pb2.FRAME_TYPE_RST_STREAM
PING = router_pb2.FRAME_TYPE_PING
#: PING payload acknowledging a client's GOAWAY (upstream peers ignore PING frames).
GOAWAY_ACK = b"jmp-goaway-ack"
#: Initial-metadata key telling our clients a driver stream is set up.
STREAM_READY_KEY = "x-jmp-stream"
#: Initial-metadata key telling our clients a LogStream subscription is in place.
LOGS_READY_KEY = "x-jmp-logs"
READ_SIZE = 1 << 20


def _tagged(context: grpc.aio.ServicerContext) -> bool:
    """Whether the caller speaks the tagged value dialect (our clients say so in their user agent)."""
    for key, value in context.invocation_metadata() or ():
        if key == "user-agent":
            return CODEC_USER_AGENT in value
        if key == CODEC_KEY:
            return value == CODEC_VERSION
    return False


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """Abort the RPC with the status the one table gives for `exc`."""
    if isinstance(exc, ClientGone) or _gone(context):  # nobody is left to tell
        log.debug("call ended by the client going away: %r", exc)
        return
    code = wire_status.code_for(exc)
    if code in ("UNKNOWN", "INTERNAL"):
        log.warning("driver call failed: %r", exc, exc_info=exc)
    else:
        log.debug("driver call failed: %r", exc)
    await context.abort(
        grpc.StatusCode[code],
        wire_status.message_for(exc),
        trailing_metadata=((wire_status.ERROR_TYPE_KEY, wire_status.type_name(exc)),),
    )


class ExporterServicer(jumpstarter_pb2_grpc.ExporterServiceServicer):
    """ExporterService backed by a Session."""

    def __init__(
        self, session: Session, *, on_end_session: Any = None, allowed: frozenset[ExporterStatus] = CALLABLE
    ) -> None:
        self.session = session
        self._on_end_session = on_end_session
        self.allowed = allowed

    async def GetReport(self, request: Any, context: grpc.aio.ServicerContext) -> pb.GetReportResponse:
        await context.send_initial_metadata(((CODEC_KEY, CODEC_VERSION),))
        s = self.session
        return pb.GetReportResponse(
            uuid=s.uuid,
            labels=s.labels,
            motd=s.motd,
            reports=[
                pb.DriverInstanceReport(
                    uuid=r.uuid,
                    parent_uuid=r.parent_uuid,
                    labels=r.labels,
                    description=r.description,
                    methods_description=r.methods_description,
                )
                for r in s.reports
            ],
        )

    async def DriverCall(self, request: Any, context: grpc.aio.ServicerContext) -> pb.DriverCallResponse:
        tagged = _tagged(context)
        try:
            args = [decode(a, tagged) for a in request.args]
            result = await self.session.call(request.uuid, request.method, args, self.allowed)
            return pb.DriverCallResponse(uuid=request.uuid, result=encode(result, tagged))
        except Exception as exc:
            error = exc
        await abort_with(context, error)
        raise AssertionError("unreachable")

    async def StreamingDriverCall(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamingDriverCallResponse]:
        tagged = _tagged(context)
        try:
            args = [decode(a, tagged) for a in request.args]
            items = self.session.streaming_call(request.uuid, request.method, args, self.allowed)
            if tagged:
                async for batch in batched(items):
                    for result in size_limited(batch):
                        yield pb.StreamingDriverCallResponse(uuid=request.uuid, result=result)
            else:
                async for item in items:
                    yield pb.StreamingDriverCallResponse(uuid=request.uuid, result=encode(item, False))
            return
        except Exception as exc:
            error = exc
        await abort_with(context, error)

    async def LogStream(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.LogStreamResponse]:
        async with self.session.logs.subscribe() as records:
            # lets our clients know the subscription is in place (see client.logs)
            await context.send_initial_metadata(((LOGS_READY_KEY, "1"),))
            async for record in records:
                ts = timestamp_pb2.Timestamp()
                ts.FromNanoseconds(int(record.created * 1e9))
                driver = getattr(record, "jmp_driver", None)
                yield pb.LogStreamResponse(
                    uuid=getattr(record, "jmp_uuid", "") or "",
                    severity=record.levelname,
                    message=record.getMessage(),
                    source=int(source_of(record)),  # type: ignore[arg-type]
                    driver_type=getattr(driver, "driver_type", None),
                    timestamp=ts,
                    structured_fields={"logger": record.name},
                )

    async def Reset(self, request: Any, context: grpc.aio.ServicerContext) -> pb.ResetResponse:
        try:
            await self.session.reset_drivers()
            return pb.ResetResponse()
        except Exception as exc:
            error = exc
        await abort_with(context, error)
        raise AssertionError("unreachable")

    async def GetStatus(self, request: Any, context: grpc.aio.ServicerContext) -> pb.GetStatusResponse:
        machine = self.session.status
        return pb.GetStatusResponse(
            status=int(machine.status),  # type: ignore[arg-type]
            message=machine.message,
            status_version=machine.version,
            previous_status=int(machine.previous) if machine.previous is not None else None,  # type: ignore[arg-type]
        )

    async def EndSession(self, request: Any, context: grpc.aio.ServicerContext) -> pb.EndSessionResponse:
        if self._on_end_session is not None:
            ok, message = await self._on_end_session()
            return pb.EndSessionResponse(success=ok, message=message)
        machine = self.session.status
        if machine.status is ExporterStatus.LEASE_READY:
            return pb.EndSessionResponse(success=True, message="local session: nothing to end")
        return pb.EndSessionResponse(success=True, message=f"exporter is {machine.status.name}")


BATCH_LIMIT = 256
#: Encoded bytes per streaming message past which a batch is split (well under the 16 MiB limit).
BATCH_BYTES = 1 << 20


def size_limited(batch: list[Any]) -> Iterator[Any]:
    """Encode a batch of items as one or more Values, each under BATCH_BYTES (one big item alone)."""
    if len(batch) == 1:
        yield encode(batch[0], True)
        return
    pending: list[Any] = []
    size = 0
    for item in batch:
        value = encode(item, True)
        item_size = value.ByteSize()
        if pending and size + item_size > BATCH_BYTES:
            yield pending[0] if len(pending) == 1 else encode_batch_values(pending)
            pending, size = [], 0
        pending.append(value)
        size += item_size
    if pending:
        yield pending[0] if len(pending) == 1 else encode_batch_values(pending)


async def batched(items: AsyncIterator[Any]) -> AsyncIterator[list[Any]]:
    """Group items produced while the previous message was being sent; the first item of a quiet
    period goes out alone and at once."""
    import asyncio
    from collections import deque

    queue: deque[Any] = deque()
    ready = asyncio.Event()
    space = asyncio.Event()
    space.set()
    finished: list[BaseException | None] = []

    async def produce() -> None:
        try:
            async for item in items:
                while len(queue) >= BATCH_LIMIT:
                    space.clear()
                    await space.wait()
                queue.append(item)
                ready.set()
            finished.append(None)
        except BaseException as exc:  # delivered to the consumer after the items before it
            finished.append(exc)
        ready.set()

    producer = asyncio.ensure_future(produce())
    try:
        while True:
            await ready.wait()
            ready.clear()
            if queue:
                batch = list(queue)
                queue.clear()
                space.set()
                yield batch
            elif finished:
                if finished[0] is not None and not isinstance(finished[0], asyncio.CancelledError):
                    raise finished[0]
                return
            if finished and not queue:
                ready.set()
    finally:
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)


class StreamServicer(router_pb2_grpc.RouterServiceServicer):
    """RouterService.Stream on an exporter session: driver byte streams and client resources."""

    def __init__(self, session: Session, allowed: frozenset[ExporterStatus] = CALLABLE) -> None:
        self.session = session
        self.allowed = allowed

    async def Stream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        try:
            metadata = dict(context.invocation_metadata() or ())
            request = json.loads(metadata.get("request", "{}"))
            kind = request.get("kind")
            if kind == "driver":
                await self._driver_stream(request, request_iterator, context)
                return
            if kind == "resource":
                await resources.serve_resource(self.session, request, request_iterator, context)
                return
            raise ValueError(f"unknown stream request kind {kind!r}")
        except (anyio.get_cancelled_exc_class(), grpc.aio.AbortError):
            raise
        except Exception as exc:
            error = _single(exc)
        await abort_with(context, error)

    async def _driver_stream(self, request: dict[str, Any], request_iterator: Any, context: Any) -> None:
        manager = self.session.stream(
            str(request.get("uuid")), str(request.get("method", "connect")), None, self.allowed
        )
        async with manager as stream:
            await context.send_initial_metadata(((STREAM_READY_KEY, "1"),))
            await pump(stream, request_iterator, context)


async def pump(stream: Any, request_iterator: Any, context: Any) -> None:
    """Carry bytes between a driver-side stream and the frames of a Stream RPC, both ways,
    until both directions have finished."""
    from anyio import BrokenResourceError, ClosedResourceError, EndOfStream

    write_lock = anyio.Lock()

    async def write(frame: Any) -> None:
        async with write_lock:  # both directions write to the same call
            try:
                await context.write(frame)
            except Exception as exc:  # a write only fails once the call is over
                raise ClientGone("the client went away") from exc

    async def inbound() -> None:
        try:
            async for frame in request_iterator:
                if frame.frame_type == DATA:
                    if frame.payload:
                        await stream.send(frame.payload)
                elif frame.frame_type == GOAWAY:
                    break
                elif frame.frame_type == RST:
                    raise ConnectionResetError("stream reset by the client")
            else:
                return  # frames ended without GOAWAY: the call was cancelled, which is no half-close
        except (BrokenResourceError, ClosedResourceError):
            return
        # tell our clients their half-close arrived, so they may end the call without losing it
        await write(router_pb2.StreamResponse(frame_type=PING, payload=GOAWAY_ACK))
        send_eof = getattr(stream, "send_eof", None)
        if send_eof is not None:
            try:
                await send_eof()
            except (BrokenResourceError, ClosedResourceError, OSError):
                pass

    async def outbound() -> None:
        byte_stream = _is_byte_stream(stream)
        while True:
            try:
                data = await (stream.receive(READ_SIZE) if byte_stream else stream.receive())
            except (EndOfStream, BrokenResourceError, ClosedResourceError):
                break
            await write(router_pb2.StreamResponse(payload=bytes(data), frame_type=DATA))
        await write(router_pb2.StreamResponse(frame_type=GOAWAY))

    async with anyio.create_task_group() as tg:
        tg.start_soon(inbound)
        tg.start_soon(outbound)


class ClientGone(ConnectionResetError):
    """Writing to the call failed: the client cancelled it or disconnected."""


def _gone(context: Any) -> bool:
    """Whether the call is already over on the peer's side (cancelled or disconnected)."""
    try:
        return bool(context.cancelled() or context.done())
    except Exception:
        return False


def _single(exc: BaseException) -> BaseException:
    """The one real error inside (nested) exception groups from the pump's task group."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _is_byte_stream(stream: Any) -> bool:
    from anyio.abc import ByteReceiveStream

    return isinstance(stream, ByteReceiveStream)
