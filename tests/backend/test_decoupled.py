"""Decoupled Python models over a real server with tritonclient.grpc streaming, as Triton's
python_backend documents them (README "Decoupled mode", "Using BLS with Decoupled Models") and
its gRPC stream handler answers: responses in the order sent with the request id, the final flag
(`triton_final_response`, an empty final response only when asked), error responses that leave
the stream open, Triton's refusal of unary inference, cancellation seen by the sender, BLS into
decoupled models (sync and async iterators), names given as bytes, and statistics counted when
execute returns. Test models: tests/models/{repeat,square,bls_square,bls_square_async,bls_bytes}."""

import queue
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from backend import config as config_util
from proto import model_config_pb2 as mc
from tests.backend.rpc_helpers import expect_error, infer_input
from tests.conftest import subset_repo
from tests.serverproc import start_server

MODELS = ("repeat", "square", "bls_square", "bls_square_async", "bls_bytes", "add_sub", "slow")


@pytest.fixture(scope="module")
def dec(test_repo, tmp_path_factory):
    repo = subset_repo(test_repo, tmp_path_factory.mktemp("decoupled"), *MODELS)
    with start_server(repo) as s:
        yield s


class Stream:
    """A tritonclient gRPC stream whose callback results land in a queue."""

    def __init__(self, url):
        self.client = grpcclient.InferenceServerClient(url)
        self.got = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.got.put((result, error)))

    def send(self, model, inputs, request_id, **kw):
        self.client.async_stream_infer(model, inputs, request_id=request_id, **kw)

    def take(self, n, timeout=30):
        return [self.got.get(timeout=timeout) for _ in range(n)]

    def close(self, cancel=False):
        self.client.stop_stream(cancel_requests=cancel)
        self.client.close()


def repeat_inputs(values, delays=None):
    values = np.array(values, np.int32)
    delays = np.zeros(values.shape, np.uint32) if delays is None else np.array(delays, np.uint32)
    return [infer_input("IN", values), infer_input("DELAY", delays)]


def final_flag(result):
    return result.get_response().parameters["triton_final_response"].bool_param


def test_responses_stream_in_order_with_the_request_id(dec):
    s = Stream(dec.url)
    try:
        s.send("repeat", repeat_inputs([4, 2, 0, 1], [1, 2, 3, 4]), "r-1", outputs=[
            grpcclient.InferRequestedOutput("OUT"), grpcclient.InferRequestedOutput("IDX")])
        got = s.take(4)
    finally:
        s.close()
    assert all(err is None for _, err in got)
    results = [r for r, _ in got]
    assert [r.get_response().id for r in results] == ["r-1"] * 4
    assert [int(r.as_numpy("OUT")[0]) for r in results] == [4, 2, 0, 1]
    assert [int(r.as_numpy("IDX")[0]) for r in results] == [0, 1, 2, 3]
    assert [final_flag(r) for r in results] == [False] * 4
    # The final flag came alone and was not asked for as a response: nothing more arrived.
    assert s.got.empty()


def test_empty_final_response_only_when_the_request_asks(dec):
    s = Stream(dec.url)
    try:
        s.send("repeat", repeat_inputs([7, 8]), "e-1", enable_empty_final_response=True)
        got = s.take(3)
        s.send("repeat", repeat_inputs([9]), "e-2", parameters={"final_with_last": True},
               enable_empty_final_response=True)
        last = s.take(1)
    finally:
        s.close()
    (a, _), (b, _), (empty, err) = got
    assert err is None
    assert [final_flag(a), final_flag(b), final_flag(empty)] == [False, False, True]
    resp = empty.get_response()
    assert (resp.id, resp.model_name, len(resp.outputs)) == ("e-1", "repeat", 0)
    # A final flag sent with the last response: that response is the final one, no empty one.
    (result, err), = last
    assert err is None and final_flag(result) and int(result.as_numpy("OUT")[0]) == 9
    assert s.got.empty()


def test_an_error_response_is_a_stream_error_and_the_stream_goes_on(dec):
    s = Stream(dec.url)
    try:
        s.send("repeat", repeat_inputs([5, -1, 7]), "x-1")
        got = s.take(3)
        s.send("square", [infer_input("IN", np.array([2], np.int32))], "x-2")
        after = s.take(2)
    finally:
        s.close()
    assert got[0][1] is None and int(got[0][0].as_numpy("OUT")[0]) == 5
    assert got[1][0] is None and isinstance(got[1][1], InferenceServerException)
    assert "negative value -1 at 1" in got[1][1].message()
    assert got[2][1] is None and int(got[2][0].as_numpy("OUT")[0]) == 7
    assert [int(r.as_numpy("OUT")[0]) for r, err in after if err is None] == [2, 2]


def test_concurrent_requests_interleave_each_in_its_own_order(dec):
    s = Stream(dec.url)
    try:
        s.send("repeat", repeat_inputs([10, 11, 12], [60, 60, 60]), "slow")
        s.send("repeat", repeat_inputs([20, 21, 22], [1, 1, 1]), "fast")
        s.send("square", [infer_input("IN", np.array([0], np.int32))], "zero")  # no response at all
        got = s.take(6)
    finally:
        s.close()
    by_id = {}
    for result, err in got:
        assert err is None
        by_id.setdefault(result.get_response().id, []).append(int(result.as_numpy("OUT")[0]))
    assert by_id == {"slow": [10, 11, 12], "fast": [20, 21, 22]}
    # one instance, yet the fast request's responses did not wait for the slow one's to end
    ids = [r.get_response().id for r, _ in got]
    assert ids[-1] == "slow"


def test_non_decoupled_answers_keep_the_request_order_on_a_stream(dec):
    s = Stream(dec.url)
    try:
        s.send("slow", [infer_input("INPUT0", np.array([1], np.int32))], "first", parameters={"sleep_ms": 400})
        s.send("slow", [infer_input("INPUT0", np.array([2], np.int32))], "second")
        got = s.take(2)
    finally:
        s.close()
    assert [r.get_response().id for r, _ in got] == ["first", "second"]  # as Triton queues them
    assert all(final_flag(r) for r, _ in got)


def test_unary_inference_on_a_decoupled_model_gets_tritons_error(dec):
    client = grpcclient.InferenceServerClient(dec.url)
    with expect_error("UNIMPLEMENTED", "ModelInfer RPC doesn't support models with decoupled transaction policy"):
        client.infer("repeat", repeat_inputs([1]))
    # the server goes on serving the model on a stream
    s = Stream(dec.url)
    try:
        s.send("repeat", repeat_inputs([3]), "after")
        (result, err), = s.take(1)
    finally:
        s.close()
    assert err is None and int(result.as_numpy("OUT")[0]) == 3


def test_execute_failures_end_the_request_with_tritons_messages(dec):
    s = Stream(dec.url)
    try:
        s.send("repeat", repeat_inputs([1]), "raise", parameters={"mode": "raise"})
        s.send("repeat", repeat_inputs([1]), "return", parameters={"mode": "return"})
        got = s.take(2)
    finally:
        s.close()
    errors = sorted(err.message() for _, err in got if err is not None)
    assert errors == sorted([
        "Failed to process the request(s) for model 'repeat_0_0', message: repeat was asked to raise",
        "Failed to process the request(s) for model 'repeat_0_0', message: Python model 'repeat_0_0' "
        "is using the decoupled mode and the execute function must return None.",
    ])


def test_a_request_whose_sender_is_dropped_without_the_final_flag_ends(dec):
    s = Stream(dec.url)
    try:
        s.send("repeat", repeat_inputs([1]), "dropped", parameters={"mode": "drop"},
               enable_empty_final_response=True)
        (result, err), = s.take(1)
    finally:
        s.close()
    assert err is None and final_flag(result) and result.get_response().id == "dropped"
    assert "the response sender of request 'dropped' was dropped without the final flag" in dec.log


def test_a_cancelled_stream_is_seen_by_the_sender_and_the_request(dec):
    s = Stream(dec.url)
    s.send("repeat", repeat_inputs([1, 2, 3, 4, 5], [0, 400, 400, 400, 400]), "c-1")
    (first, err), = s.take(1)
    assert err is None and int(first.as_numpy("OUT")[0]) == 1
    s.close(cancel=True)
    deadline = time.time() + 10
    line = "repeat: request 'c-1' cancelled after"
    while line not in dec.log and time.time() < deadline:
        time.sleep(0.05)
    assert line in dec.log
    assert "(request.is_cancelled() True)" in dec.log.split(line, 1)[1].splitlines()[0]


def test_bls_exec_decoupled_iterates_every_response_then_the_empty_final(dec):
    client = grpcclient.InferenceServerClient(dec.url)
    for n in (3, 0):
        result = client.infer("bls_square", [infer_input("IN", np.array([n], np.int32))])
        assert int(result.as_numpy("SUM")[0]) == n * n
        assert int(result.as_numpy("COUNT")[0]) == n + 1  # n responses, then the empty final one
    # exec(decoupled=True) on a model that is not decoupled: its one response, final
    result = client.infer("bls_square", [infer_input("IN", np.array([3], np.int32))], parameters={"mode": "plain"})
    assert (int(result.as_numpy("SUM")[0]), int(result.as_numpy("COUNT")[0])) == (24, 1)


def test_bls_async_exec_decoupled(dec):
    client = grpcclient.InferenceServerClient(dec.url)
    result = client.infer("bls_square_async", [infer_input("IN", np.array([4], np.int32))])
    assert int(result.as_numpy("SUM")[0]) == 2 * 4 * 4  # two requests, one per iterator kind


def test_bls_errors(dec):
    client = grpcclient.InferenceServerClient(dec.url)
    x = [infer_input("IN", np.array([2], np.int32))]
    with expect_error("INTERNAL", "Model square is using the decoupled. The current BLS request call doesn't "
                      "support models using the decoupled transaction policy. Please use 'decoupled=True'"):
        client.infer("bls_square", x, parameters={"mode": "not_decoupled"})
    with expect_error("INTERNAL", "Request for unknown model: 'no_such_model' is not found"):
        client.infer("bls_square", x, parameters={"mode": "unknown"})


def test_bls_iterator_cancel_reaches_the_decoupled_model(dec):
    client = grpcclient.InferenceServerClient(dec.url)
    result = client.infer("bls_square", [infer_input("IN", np.array([5], np.int32))], parameters={"mode": "cancel"})
    assert int(result.as_numpy("COUNT")[0]) < 5  # the model stopped early
    assert "repeat: request '' cancelled after" in dec.log


def test_bls_names_given_as_bytes(dec):
    client = grpcclient.InferenceServerClient(dec.url)
    a, b = np.arange(4, dtype=np.float32), np.full(4, 10, np.float32)
    result = client.infer("bls_bytes", [infer_input("INPUT0", a), infer_input("INPUT1", b),
                                        infer_input("MODEL", np.array([b"add_sub"], np.object_), "BYTES")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def _stats(client, model):
    s = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    st = s["inference_stats"]
    return {"success": int(st["success"].get("count", 0)), "success_ns": int(st["success"].get("ns", 0)),
            "fail": int(st["fail"].get("count", 0)), "executions": int(s.get("execution_count", 0)),
            "inferences": int(s.get("inference_count", 0))}


def test_statistics_count_a_request_when_execute_returns(dec):
    """As Triton's python backend reports them for decoupled models: one success per request
    whose execute returned, the request's duration ending then (not with its last response), an
    execute that raised a failure."""
    client = grpcclient.InferenceServerClient(dec.url)
    before = _stats(client, "repeat")
    s = Stream(dec.url)
    try:
        start = time.monotonic()
        s.send("repeat", repeat_inputs([1, 2], [300, 300]), "st-1")
        s.send("repeat", repeat_inputs([1]), "st-2", parameters={"mode": "raise"})
        got = s.take(3)
        streamed = time.monotonic() - start
    finally:
        s.close()
    assert sum(err is not None for _, err in got) == 1 and streamed >= 0.6
    after = _stats(client, "repeat")
    assert after["success"] - before["success"] == 1
    assert after["fail"] - before["fail"] == 1
    assert after["executions"] - before["executions"] == 2
    assert after["inferences"] - before["inferences"] == 2
    assert (after["success_ns"] - before["success_ns"]) / 1e9 < 0.3  # execute returned at once
    # the metrics endpoint reads the same counters
    import urllib.request
    text = urllib.request.urlopen(dec.metrics_url, timeout=10).read().decode()
    line = next(ln for ln in text.splitlines()
                if ln.startswith('nv_inference_request_success{model="repeat",version="1"}'))
    assert float(line.split()[-1]) == after["success"]


def test_http_refuses_a_decoupled_model_with_tritons_error(dec):
    client = httpclient.InferenceServerClient(dec.http_url)
    inputs = []
    for name, arr in (("IN", np.array([1], np.int32)), ("DELAY", np.array([0], np.uint32))):
        inp = httpclient.InferInput(name, [1], "INT32" if arr.dtype == np.int32 else "UINT32")
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    with pytest.raises(InferenceServerException) as info:
        client.infer("repeat", inputs)
    assert "HTTP end point doesn't support models with decoupled transaction policy" in info.value.message()
    assert client.is_model_ready("repeat")  # the server goes on


def test_decoupled_policy_is_refused_for_backends_that_cannot_stream():
    config = mc.ModelConfig(backend="onnxruntime")
    config.model_transaction_policy.decoupled = True
    with pytest.raises(Exception, match="the onnxruntime backend does not support the decoupled transaction policy"):
        config_util.normalize(config, "m")
    config.backend = "python"
    assert config_util.normalize(config, "m").model_transaction_policy.decoupled
