"""One ModelStreamInfer call, as Triton's stream handler answers it (grpc/stream_infer_handler.cc):

* requests run concurrently; the answers of models that are not decoupled leave in the order
  their requests came (Triton queues them so); a decoupled model's responses leave as the model
  sends them, each with its request's id;
* every response carries the parameter `triton_final_response` (whether it is the request's
  last); a decoupled model's final flag sent alone becomes an empty response only when the
  request asked with `triton_enable_empty_final_response`;
* an error is a message with `error_message` and the request's id, model and version: the
  stream stays open;
* when the call ends (the client cancelled or went away), decoupled models see is_cancelled()
  on their requests and senders."""

import asyncio
import logging
import threading

from proto import grpc_service_pb2 as pb

from . import grpc_codec as codec
from .errors import ServerError

log = logging.getLogger("backend.grpc")

FINAL_PARAM = "triton_final_response"
EMPTY_FINAL_PARAM = "triton_enable_empty_final_response"


def _error(message: str, req, final: bool = True) -> pb.ModelStreamInferResponse:
    """A stream message naming the request (an error; with no message, the final flag alone)."""
    resp = pb.ModelStreamInferResponse(
        error_message=message,
        infer_response=pb.ModelInferResponse(id=req.id, model_name=req.model_name,
                                             model_version=req.model_version))
    resp.infer_response.parameters[FINAL_PARAM].bool_param = final
    return resp


def _result(result, final: bool) -> list:
    result.parameters = {**result.parameters, FINAL_PARAM: final}
    return codec.encode_stream_response(result)


class StreamCall:
    """The responses of one ModelStreamInfer call (`responses()` is the RPC's async generator).
    `malformed` tells a request that did not parse (answered with its `message`)."""

    def __init__(self, core, request_iterator, context, malformed):
        self.core = core
        self.requests = request_iterator
        self.context = context
        self.malformed = malformed
        self.out = asyncio.Queue()
        self.in_order = asyncio.Queue()  # answer futures of non-decoupled requests, request order
        self.tasks = set()
        self.ended = threading.Event()

    def is_cancelled(self) -> bool:
        return self.ended.is_set() or self.context.cancelled()

    async def responses(self):
        reader = asyncio.ensure_future(self._read())
        writer = asyncio.ensure_future(self._write_in_order())
        try:
            while True:
                item = await self.out.get()
                if item is None:
                    break
                yield item
        finally:
            self.ended.set()  # decoupled models now see is_cancelled()
            reader.cancel()
            writer.cancel()
            for t in list(self.tasks):
                t.cancel()

    def _spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _read(self):
        loop = asyncio.get_running_loop()
        async for parsed in self.requests:
            slot = None
            if isinstance(parsed, self.malformed):
                slot = loop.create_future()
                slot.set_result(pb.ModelStreamInferResponse(error_message=parsed.message))
            elif self.core.is_decoupled(parsed.msg.model_name, parsed.msg.model_version):
                self._spawn(self._decoupled(parsed))
            else:
                slot = loop.create_future()
                self._spawn(self._unary(parsed, slot))
            if slot is not None:
                self.in_order.put_nowait(slot)
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        self.in_order.put_nowait(None)

    async def _write_in_order(self):
        while True:
            slot = await self.in_order.get()
            if slot is None:
                break
            await self.out.put(await slot)
        await self.out.put(None)

    async def _unary(self, parsed, slot):
        req = parsed.msg
        try:
            result = await self.core.infer_request(codec.decode_request(parsed), self.is_cancelled)
            answer = _result(result, True)
        except ServerError as e:
            answer = _error(e.message, req)
        except asyncio.CancelledError:
            slot.cancel()
            raise
        except Exception as e:
            log.exception("stream request failed")
            answer = _error(f"internal error: {type(e).__name__}: {e}", req)
        slot.set_result(answer)

    async def _decoupled(self, parsed):
        req = parsed.msg
        try:
            wire = codec.decode_request(parsed)
            empty_final = wire.parameters.get(EMPTY_FINAL_PARAM) is True
            async for item, final in self.core.stream_request(wire, self.is_cancelled):
                if item is None:
                    if final and empty_final:
                        await self.out.put(_error("", req))
                elif isinstance(item, ServerError):
                    await self.out.put(_error(item.message, req, final))
                else:
                    await self.out.put(_result(item, final))
        except ServerError as e:
            await self.out.put(_error(e.message, req))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("stream request failed")
            await self.out.put(_error(f"internal error: {type(e).__name__}: {e}", req))
