"""The scheduler hands a busy instance its next execution without a dynamic batcher: it waits on
the instance's own thread and starts when the previous one returns, with no round trip through
the event loop (what keeps an accelerator busy). In process, with an in-memory instance."""

import asyncio
import threading
import time

import numpy as np
import pytest
from google.protobuf import text_format

from backend.errors import Unavailable
from backend.scheduler import Instance, InstanceModel, InstancePool
from backend.types import InferRequest, InferResponse, Timing
from proto import model_config_pb2 as mc

PLAIN = """name: "m" max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ] output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]"""


class _Timed(Instance):
    """Echoes X after `seconds`, recording (X, start, end) of each execution."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.runs = []
        self.lock = threading.Lock()

    def execute(self, requests):
        start = time.monotonic()
        time.sleep(self.seconds)
        with self.lock:
            self.runs.append((float(requests[0].inputs["X"][0]), start, time.monotonic()))
        return [InferResponse("m", "1", outputs={"Y": r.inputs["X"]}) for r in requests], Timing()


def _model(instances, config=PLAIN, **kw):
    cfg = text_format.Parse(config, mc.ModelConfig())
    return InstanceModel(cfg, 1, "/nowhere", InstancePool([(f"m_{i}", lambda inst=inst: inst)
                                                          for i, inst in enumerate(instances)]), **kw)


def _run(test, instances, **kw):
    """asyncio.run(test(model)) on a model over `instances`, closed whatever happens."""
    async def go():
        model = _model(instances, **kw)
        try:
            await test(model)
        finally:
            await model.close()
    asyncio.run(go())


def _request(x, **kw):
    return InferRequest("m", inputs={"X": np.array([x], np.float32)}, **kw)


def test_next_execution_starts_while_the_event_loop_is_blocked():
    inst = _Timed(0.1)

    async def go(model):
        t0 = time.monotonic()
        tasks = [asyncio.ensure_future(model.infer(_request(i))) for i in range(2)]
        await asyncio.sleep(0.02)  # both handed out: the first runs, the second waits on the thread
        assert model.pending_requests() == 1
        time.sleep(0.4)  # the event loop is blocked well past the first execution's end
        results = await asyncio.gather(*tasks)
        assert [float(r.outputs["Y"][0]) for r in results] == [0.0, 1.0]
        (_, _, end0), (_, start1, _) = inst.runs
        assert start1 - t0 < 0.3, "the second execution waited for the event loop"
        assert start1 >= end0  # one execution at a time on the instance
        assert model.pending_requests() == 0
        # queue time runs until the execution started on the thread
        assert results[1].timing.queue_ns >= 0.08e9
    _run(go, [inst])


def test_a_request_cancelled_while_waiting_on_the_thread_never_runs():
    inst = _Timed(0.2)

    async def go(model):
        first = asyncio.ensure_future(model.infer(_request(0)))
        second = asyncio.ensure_future(model.infer(_request(1)))
        await asyncio.sleep(0.05)
        second.cancel()
        assert float((await first).outputs["Y"][0]) == 0.0
        with pytest.raises(asyncio.CancelledError):
            await second
        await asyncio.sleep(0.1)
        assert [x for x, _, _ in inst.runs] == [0.0]
        assert model.pending_requests() == 0
        assert float((await model.infer(_request(2))).outputs["Y"][0]) == 2.0  # the instance serves on
    _run(go, [inst])


def test_an_idle_instance_is_preferred_and_a_queue_timeout_is_kept():
    a, b = _Timed(0.3), _Timed(0.3)

    async def go(model):
        t0 = time.monotonic()
        busy = [asyncio.ensure_future(model.infer(_request(i))) for i in range(2)]
        await asyncio.sleep(0.02)
        # a request with a queue timeout is not handed to a busy instance: it times out queued
        with pytest.raises(Unavailable, match="Request timeout expired"):
            await model.infer(_request(9, timeout_us=50_000))
        assert time.monotonic() - t0 < 0.25 and not a.runs and not b.runs
        await asyncio.gather(*busy)
        assert len(a.runs) == len(b.runs) == 1  # one each, at the same time
        assert abs(a.runs[0][1] - b.runs[0][1]) < 0.2
        await asyncio.sleep(0.35)
        assert len(a.runs) == len(b.runs) == 1  # the timed-out request never ran
    _run(go, [a, b])


def test_no_prefetch_with_an_execution_timeout():
    inst = _Timed(0.1)

    async def go(model):
        tasks = [asyncio.ensure_future(model.infer(_request(i))) for i in range(2)]
        await asyncio.sleep(0.02)
        assert model.pending_requests() == 1  # the second is still queued on the loop
        time.sleep(0.3)
        await asyncio.gather(*tasks)
        (_, _, _), (_, start1, _) = inst.runs
        assert start1 - inst.runs[0][1] >= 0.25  # it started once the loop ran again
    _run(go, [inst], execution_timeout_s=5)
