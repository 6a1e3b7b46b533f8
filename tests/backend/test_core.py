"""The transport-neutral core in process (no sockets): InferenceCore over a Repository of test
models, the scheduler with an in-memory instance, the repository's life cycle. Fast, beside the
real-RPC tests that drive the same paths through gRPC and HTTP."""

import asyncio
import time

import numpy as np
import pytest
from google.protobuf import text_format

from backend.core import InferenceCore
from backend.errors import InvalidArgument, Unavailable, UnknownModel
from backend.repository import Repository
from backend.scheduler import Instance, InstanceModel, InstancePool
from backend.types import InferRequest, InferResponse, InputTensor, RequestedOutput, Timing, WireRequest
from proto import model_config_pb2 as mc
from tests.conftest import subset_repo


def run(coro):
    return asyncio.run(coro)


async def _core(repo, **kw):
    core = InferenceCore(Repository(str(repo)), **kw)
    failed = await core.start()
    assert not failed, failed
    return core


def _wire(model, arrays, request_id="", **kw):
    return WireRequest(model, inputs=[InputTensor(n, "FP32", a.shape, a.tobytes()) for n, a in arrays.items()],
                       id=request_id, **kw)


@pytest.fixture
def repo(test_repo, tmp_path):
    return subset_repo(test_repo, tmp_path / "repo", "identity", "add_sub", "raises")


def test_infer_request_end_to_end(repo):
    async def go():
        core = await _core(repo)
        try:
            a, b = np.arange(4, dtype=np.float32), np.full(4, 2, np.float32)
            result = await core.infer_request(_wire("add_sub", {"INPUT0": a, "INPUT1": b}, "r1",
                                                    outputs=[RequestedOutput("OUTPUT1")]))
            assert (result.model_name, result.model_version, result.id) == ("add_sub", "1", "r1")
            assert [o.name for o in result.outputs] == ["OUTPUT1"]
            np.testing.assert_array_equal(result.outputs[0].array, a - b)
            stats = core.statistics("add_sub", "")["model_stats"][0]
            assert stats["inference_stats"]["success"]["count"] == 1 and stats["execution_count"] == 1
            meta = core.model_metadata("identity", "")
            assert meta["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, -1]}]
        finally:
            await core.close()
    run(go())


def test_validation_prefix_and_failure_reasons(repo):
    async def go():
        core = await _core(repo)
        try:
            bad = WireRequest("identity", inputs=[InputTensor("INPUT0", "FP64", (1, 2), bytes(16))])
            with pytest.raises(InvalidArgument, match=r"^\[request id: <id_unknown>\] inference input 'INPUT0' "
                                                      r"data-type is 'FP64'"):
                await core.infer_request(bad)
            with pytest.raises(InvalidArgument, match=r"^\[request id: x\] input byte size mismatch"):
                await core.infer_request(WireRequest("identity", id="x", inputs=[
                    InputTensor("INPUT0", "FP32", (1, 2), bytes(4))]))
            with pytest.raises(InvalidArgument, match="^invalid value type for 'priority' parameter"):
                await core.infer_request(_wire("identity", {"INPUT0": np.ones((1, 2), np.float32)},
                                               parameters={"priority": "high"}))
            with pytest.raises(UnknownModel, match="^Request for unknown model: 'nope' is not found$"):
                await core.infer_request(_wire("nope", {}))
            boom = WireRequest("raises", inputs=[InputTensor("INPUT0", "INT32", (1,), np.int32(666).tobytes())])
            with pytest.raises(Exception, match="marker 666"):
                await core.infer_request(boom)
            identity = core.repository.get("identity", "")
            assert identity.stats.failures_by_reason() == {"OTHER": 3}
            assert core.repository.get("raises", "").stats.failures_by_reason() == {"BACKEND": 1}
        finally:
            await core.close()
    run(go())


def test_admission_control(repo):
    async def go():
        core = await _core(repo, max_inflight=1)
        try:
            x = {"INPUT0": np.ones((1, 2), np.float32)}
            core.inflight = 1  # as if one request were running
            with pytest.raises(Unavailable, match="limit of 1 concurrent requests"):
                await core.infer_request(_wire("identity", x))
            core.inflight = 0
            core.shutting_down = True
            with pytest.raises(Unavailable, match="shutting down"):
                await core.infer_request(_wire("identity", x))
            assert not core.server_ready()
        finally:
            await core.close()
    run(go())


def test_shared_memory_input_and_output(repo, tmp_path):
    from multiprocessing import shared_memory
    region = shared_memory.SharedMemory(create=True, size=64)
    try:
        async def go():
            core = await _core(repo)
            try:
                x = np.arange(4, dtype=np.float32).reshape(1, 4)
                region.buf[:16] = x.tobytes()
                core.shm.register("r", "/" + region.name, 0, 64)
                shm = {"shared_memory_region": "r", "shared_memory_byte_size": 16}
                result = await core.infer_request(WireRequest(
                    "identity", inputs=[InputTensor("INPUT0", "FP32", (1, 4), None, dict(shm))],
                    outputs=[RequestedOutput("OUTPUT0", parameters=dict(shm, shared_memory_offset=32))]))
                out = result.outputs[0]
                assert out.array is None and out.parameters["shared_memory_offset"] == 32
                np.testing.assert_array_equal(np.frombuffer(region.buf, np.float32, 4, 32), x[0])
            finally:
                core.shm.unregister("")
                await core.close()
        run(go())
    finally:
        region.close()
        region.unlink()


# ---- scheduler ------------------------------------------------------------------------------

class _Recorder(Instance):
    """Executes by echoing, recording each execution's batch."""

    def __init__(self):
        self.batches = []

    def execute(self, requests):
        self.batches.append([r.inputs["X"].shape[0] for r in requests])
        time.sleep(0.05)
        return [InferResponse("m", "1", outputs={"Y": r.inputs["X"]}) for r in requests], Timing()


def _model(config_text, instance):
    config = text_format.Parse(config_text, mc.ModelConfig())
    return InstanceModel(config, 1, "/nowhere", InstancePool([("recorder", lambda: instance)]))


BATCHED = """name: "m" max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ] output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 100000 default_queue_policy { max_queue_size: 3 } }"""


def test_scheduler_batches_queued_requests_and_rejects_past_the_queue():
    async def go():
        inst = _Recorder()
        model = _model(BATCHED, inst)
        try:
            reqs = [InferRequest("m", inputs={"X": np.full((1, 1), i, np.float32)}) for i in range(3)]
            results = await asyncio.gather(*(model.infer(r) for r in reqs))
            assert [float(r.outputs["Y"][0, 0]) for r in results] == [0.0, 1.0, 2.0]
            assert inst.batches == [[1, 1, 1]]  # one execution of the three
            # a full queue refuses, with the metrics' reason
            tasks = [asyncio.ensure_future(model.infer(reqs[0])) for _ in range(3)]
            await asyncio.sleep(0)
            with pytest.raises(Unavailable, match="Exceeds maximum queue size") as e:
                await model.infer(reqs[0])
            assert e.value.reason == "REJECTED"
            assert model.pending_requests() == 3
            await asyncio.gather(*tasks)
            assert model.pending_requests() == 0
        finally:
            await model.close()
    run(go())


# ---- repository -------------------------------------------------------------------------------

def test_repository_life_cycle(repo):
    async def go():
        repository = Repository(str(repo))
        assert sorted(repository.scan()) == ["add_sub", "identity", "raises"]
        await repository.load("identity")
        assert repository.is_ready("identity") and not repository.is_loaded("add_sub")
        states = {name: state for name, _, state, _ in repository.index()}
        assert states["identity"] == "READY"
        await repository.unload("identity")
        assert not repository.is_ready("identity")
        with pytest.raises(UnknownModel):
            repository.get("nope")
        await repository.close()
    run(go())
