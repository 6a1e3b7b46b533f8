"""ModelInfer and ModelStreamInfer over real RPCs: request ids, output selection and order,
raw_output_contents, BYTES, typed contents, 12 MB messages, and answers never mixed up."""

import concurrent.futures
import json
import queue
import struct

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb

from tests.backend.rpc_helpers import as_array, infer_input, outputs, raw_request, raw_stub

A = np.arange(4, dtype=np.float32)
B = np.full(4, 10, np.float32)


def _add_sub_inputs(a=A, b=B):
    return [infer_input("INPUT0", a), infer_input("INPUT1", b)]


def test_add_sub_all_outputs_when_none_requested(triton_client):
    result = triton_client.infer("add_sub", _add_sub_inputs(), request_id="req-1")
    resp = result.get_response()
    assert resp.id == "req-1"
    assert (resp.model_name, resp.model_version) == ("add_sub", "1")
    assert [o.name for o in resp.outputs] == ["OUTPUT0", "OUTPUT1"]
    assert len(resp.raw_output_contents) == 2
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), A + B)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), A - B)


def test_only_requested_outputs_in_requested_order(triton_client):
    result = triton_client.infer("add_sub", _add_sub_inputs(), outputs=outputs("OUTPUT1"))
    resp = result.get_response()
    assert [o.name for o in resp.outputs] == ["OUTPUT1"] and len(resp.raw_output_contents) == 1
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), A - B)
    resp = triton_client.infer("add_sub", _add_sub_inputs(), outputs=outputs("OUTPUT1", "OUTPUT0")).get_response()
    assert [o.name for o in resp.outputs] == ["OUTPUT1", "OUTPUT0"]
    np.testing.assert_array_equal(as_array(resp, 0, np.float32), A - B)
    np.testing.assert_array_equal(as_array(resp, 1, np.float32), A + B)


def test_request_id_echoed_in_stream_responses_and_errors(server):
    stub = raw_stub(server.url)
    requests = [raw_request("identity", {"INPUT0": np.full((1, 3), i, np.float32)}, id=f"id-{i}")
                for i in range(5)]
    requests.append(raw_request("no_such_model", {"INPUT0": A}, id="id-bad"))
    requests.append(raw_request("add_sub", {"INPUT0": A}, id="id-missing"))
    answers = list(stub.ModelStreamInfer(iter(requests), timeout=30))
    by_id = {a.infer_response.id: a for a in answers}
    assert sorted(by_id) == sorted(r.id for r in requests)
    for i in range(5):
        a = by_id[f"id-{i}"]
        assert a.error_message == ""
        np.testing.assert_array_equal(as_array(a.infer_response, 0, np.float32), np.full((1, 3), i))
    # Errors do not close the stream; they come back with the request id.
    assert "Request for unknown model: 'no_such_model' is not found" in by_id["id-bad"].error_message
    assert "missing required input(s) ['INPUT1']" in by_id["id-missing"].error_message


def test_streaming_with_tritonclient(server):
    client = grpcclient.InferenceServerClient(server.url)
    got = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    try:
        for i in range(10):
            client.async_stream_infer("identity", [infer_input("INPUT0", np.full((1, 2), i, np.float32))],
                                      request_id=str(i))
        results = [got.get(timeout=30) for _ in range(10)]
    finally:
        client.stop_stream()
        client.close()
    assert all(err is None for _, err in results)
    for result, _ in results:
        i = int(result.get_response().id)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 2), i, np.float32))


def test_bytes_in_and_out(triton_client):
    words = np.array([[b"abc", b"", b"nul\x00end\x00", "h\u00e9llo".encode(), b"x" * 1000]], dtype=np.object_)
    result = triton_client.infer("echo_bytes", [infer_input("INPUT0", words)])
    upper = result.as_numpy("OUTPUT0")
    assert upper.shape == (1, 5) and upper.dtype == np.object_
    assert upper.tolist() == [[w.upper() for w in words[0]]]
    np.testing.assert_array_equal(result.as_numpy("LENGTH"), [[3, 0, 8, 6, 1000]])
    # On the wire: a 4-byte little-endian length before each element.
    raw = result.get_response().raw_output_contents[0]
    assert raw[:7] == struct.pack("<I", 3) + b"ABC"
    assert raw[7:11] == struct.pack("<I", 0)


def test_bytes_through_typed_contents(server):
    req = pb.ModelInferRequest(model_name="echo_bytes", id="typed")
    t = req.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 2])
    t.contents.bytes_contents.extend([b"ab", b"cde"])
    resp = raw_stub(server.url).ModelInfer(req, timeout=30)
    assert resp.raw_output_contents[0] == struct.pack("<I", 2) + b"AB" + struct.pack("<I", 3) + b"CDE"


def test_typed_fp32_contents(server):
    req = pb.ModelInferRequest(model_name="add_sub")
    for name, values in (("INPUT0", A), ("INPUT1", B)):
        t = req.inputs.add(name=name, datatype="FP32", shape=[4])
        t.contents.fp32_contents.extend(values.tolist())
    resp = raw_stub(server.url).ModelInfer(req, timeout=30)
    np.testing.assert_array_equal(as_array(resp, 0, np.float32), A + B)


def test_12_mb_request_and_response(triton_client):
    big = np.random.default_rng(0).random((1, 3 * 2**20), dtype=np.float32)  # 12 MiB
    result = triton_client.infer("identity", [infer_input("INPUT0", big)])
    assert len(result.get_response().raw_output_contents[0]) == big.nbytes
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), big)


def test_request_parameters_id_and_requested_outputs_reach_the_model(triton_client):
    result = triton_client.infer("introspect", [infer_input("INPUT0", np.array([1], np.int32))],
                                 request_id="abc-7", parameters={"flag": True, "n": 3, "s": "text"},
                                 outputs=outputs("REQUEST"))
    assert [o.name for o in result.get_response().outputs] == ["REQUEST"]  # ARGS pruned
    seen = json.loads(result.as_numpy("REQUEST")[0])
    assert seen == {"request_id": "abc-7", "parameters": {"flag": True, "n": 3, "s": "text"},
                    "requested_output_names": ["REQUEST"]}


def test_concurrent_requests_are_never_mixed(triton_client):
    """64 async requests with distinct data to a batching model (2 instances): each answer is
    its own request's data, none lost or duplicated."""
    n = 64
    done = queue.Queue()
    for i in range(n):
        data = np.full((1 + i % 3, 1 + i % 5), i, np.float32)
        triton_client.async_infer("identity", [infer_input("INPUT0", data)],
                                  callback=lambda result, error, i=i, data=data: done.put((i, data, result, error)),
                                  request_id=f"c{i}")
    seen = []
    for _ in range(n):
        i, data, result, error = done.get(timeout=60)
        assert error is None, error
        assert result.get_response().id == f"c{i}"
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
        seen.append(i)
    assert sorted(seen) == list(range(n))


def test_threads_hammering_the_onnx_model(server):
    """Several client threads at once on the ONNX model (dynamic batching concatenates and
    splits): every answer matches its inputs."""
    errors = []

    def worker(seed):
        client = grpcclient.InferenceServerClient(server.url)
        rng = np.random.default_rng(seed)
        try:
            for _ in range(20):
                a = rng.random((int(rng.integers(1, 4)), 4), dtype=np.float32)
                b = rng.random(a.shape, dtype=np.float32)
                r = client.infer("add_onnx", [infer_input("INPUT0", a), infer_input("INPUT1", b)])
                if not (np.allclose(r.as_numpy("OUTPUT0"), a + b) and np.allclose(r.as_numpy("OUTPUT1"), a - b)):
                    errors.append(seed)
        finally:
            client.close()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(worker, s) for s in range(4)]
        for f in futures:
            f.result(timeout=60)  # a worker's exception (or a hang) fails the test
    assert not errors


def test_every_datatype_round_trips(triton_client):
    rng = np.random.default_rng(1)
    arrays = {
        "BOOL": rng.random((2, 5)) > 0.5,
        "STRING": np.array([[b"a", b"", b"\x00z"], [b"long" * 10, b"b", b"c"]], np.object_),
    }
    for t, dt in (("UINT8", np.uint8), ("UINT16", np.uint16), ("UINT32", np.uint32), ("UINT64", np.uint64),
                  ("INT8", np.int8), ("INT16", np.int16), ("INT32", np.int32), ("INT64", np.int64)):
        info = np.iinfo(dt)
        arrays[t] = rng.integers(info.min, info.max, (2, 3), dtype=dt, endpoint=True)
    for t, dt in (("FP16", np.float16), ("FP32", np.float32), ("FP64", np.float64)):
        arrays[t] = (rng.standard_normal((2, 4)) * 1e3).astype(dt)
    inputs = [infer_input("IN_" + t, a, "BYTES" if t == "STRING" else None) for t, a in arrays.items()]
    result = triton_client.infer("all_types", inputs)
    wire = {o.name: o.datatype for o in result.get_response().outputs}
    for t, a in arrays.items():
        assert wire["OUT_" + t] == ("BYTES" if t == "STRING" else t)
        out = result.as_numpy("OUT_" + t)
        assert out.dtype == a.dtype and out.shape == a.shape, t
        assert out.tolist() == a.tolist(), t
