"""Decoupled requests (model_transaction_policy { decoupled: true }): a model sends any number of
responses for a request, from any thread and even after its execute returned, and ends with the
final flag. `ResponseStream` carries them, in the order sent, from the model's threads to the
server's event loop, where the stream handler (gRPC ModelStreamInfer, BLS exec(decoupled=True))
reads them."""

import asyncio
import logging

from .errors import Cancelled, Internal, ServerError

log = logging.getLogger("backend.decoupled")


class ResponseStream:
    """The responses of one decoupled request. Items are (response, final): response is an
    InferResponse, a ServerError (an error response; the stream goes on unless final) or None (the
    final flag sent alone). `send` may be called from any thread; iteration ends after the final
    item."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._queue = asyncio.Queue()
        self.finished = False  # the final item was queued (set on the loop)

    def send(self, response, final: bool):
        """From any thread: queue one item. call_soon_threadsafe keeps the order of the calls."""
        try:
            self._loop.call_soon_threadsafe(self._put, response, final)
        except RuntimeError:  # the server's loop is closed: nobody is listening any more
            log.debug("response dropped: the server is shutting down")

    def _put(self, response, final):
        if self.finished:
            return  # after the final item (an execution error raced the model's own final)
        self.finished = final
        self._queue.put_nowait((response, final))

    def execution_done(self, task: asyncio.Future):
        """Done-callback of the request's execution: if it failed (execute raised, the queue was
        full, the model was unloaded...), the error ends the stream unless the model already
        sent its final response."""
        if task.cancelled():
            error = Cancelled("the request was cancelled")
        else:
            error = task.exception()
            if error is None:
                return  # execute returned: the responses keep coming until the final flag
            if not isinstance(error, ServerError):
                error = Internal(f"{type(error).__name__}: {error}")
        self._put(error, True)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.finished and self._queue.empty():
            raise StopAsyncIteration
        return await self._queue.get()
