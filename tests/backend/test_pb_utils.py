"""Unit tests of backend/python_stub/triton_python_backend_utils.py (no server) and of the
add_sub example model run in-process against it."""

import asyncio
import importlib.util
import json
import logging
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
STUB_DIR = ROOT / "backend" / "python_stub"
ADD_SUB_DIR = ROOT / "tests" / "models" / "add_sub"

# Models import the module by its Triton name, so the tests do too.
if str(STUB_DIR) not in sys.path:
    sys.path.insert(0, str(STUB_DIR))
import triton_python_backend_utils as pb_utils  # noqa: E402


def reference_serialize(items):
    """Straight from the wire format: 4-byte little-endian length, then the bytes."""
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


# ------------------------------------------------------------------------------ data types

TRITON_NUMBERS = {
    "BOOL": 1, "UINT8": 2, "UINT16": 3, "UINT32": 4, "UINT64": 5, "INT8": 6, "INT16": 7,
    "INT32": 8, "INT64": 9, "FP16": 10, "FP32": 11, "FP64": 12, "BYTES": 13,
}


def test_datatype_constants_follow_tritonserver_numbering():
    for name, number in TRITON_NUMBERS.items():
        assert getattr(pb_utils, f"TRITONSERVER_TYPE_{name}") == number
    assert pb_utils.TRITONSERVER_TYPE_INVALID == 0
    assert pb_utils.TRITONSERVER_TYPE_BF16 == 14


@pytest.mark.parametrize("number", range(1, 14))
def test_triton_numpy_round_trip(number):
    np_type = pb_utils.triton_to_numpy_type(number)
    assert pb_utils.numpy_to_triton_type(np_type) == number
    assert pb_utils.numpy_to_triton_type(np.dtype(np_type)) == number


@pytest.mark.parametrize("config_name, number", [
    ("TYPE_BOOL", 1), ("TYPE_UINT8", 2), ("TYPE_UINT16", 3), ("TYPE_UINT32", 4),
    ("TYPE_UINT64", 5), ("TYPE_INT8", 6), ("TYPE_INT16", 7), ("TYPE_INT32", 8),
    ("TYPE_INT64", 9), ("TYPE_FP16", 10), ("TYPE_FP32", 11), ("TYPE_FP64", 12),
    ("TYPE_STRING", 13),
])
def test_config_type_names_agree_with_numbers(config_name, number):
    assert pb_utils.numpy_to_triton_type(pb_utils.triton_string_to_numpy(config_name)) == number


def test_dtype_edge_cases():
    assert pb_utils.triton_string_to_numpy("TYPE_BOOL") is bool  # as in Triton's table
    assert pb_utils.numpy_to_triton_type(np.dtype("S7")) == 13
    assert pb_utils.numpy_to_triton_type(np.dtype(">f4")) == 11
    assert pb_utils.numpy_to_triton_type(np.str_) is None
    assert pb_utils.numpy_to_triton_type(np.complex64) is None
    assert pb_utils.triton_to_numpy_type(14) is None
    assert pb_utils.triton_to_numpy_type(0) is None
    with pytest.raises(KeyError):
        pb_utils.triton_string_to_numpy("TYPE_NOPE")


# ------------------------------------------------------------------------------ BYTES

def test_bytes_round_trip_with_empty_and_nul_elements():
    items = [b"", b"\x00", b"a\x00", b"\x00\x00end\x00", b"plain", b"", bytes(range(256))]
    arr = np.array(items, dtype=np.object_)
    wire = pb_utils.serialize_byte_tensor(arr)
    assert wire.dtype == np.uint8 and wire.ndim == 1
    assert wire.tobytes() == reference_serialize(items)
    back = pb_utils.deserialize_bytes_tensor(wire.tobytes())
    assert back.dtype == np.object_
    assert back.tolist() == items


def test_bytes_serialize_is_c_order_and_encodes_str_as_utf8():
    arr = np.array([["a", "bé"], [b"c\x00", 7]], dtype=np.object_)
    wire = pb_utils.serialize_byte_tensor(arr.T)  # non-contiguous: still C order of arr.T
    assert wire.tobytes() == reference_serialize([b"a", b"c\x00", "bé".encode(), b"7"])


def test_fixed_width_bytes_drop_trailing_nuls_like_numpy():
    arr = np.array([b"ab\x00c", b"", b"xyz"], dtype="S4")
    wire = pb_utils.serialize_byte_tensor(arr)
    assert wire.tobytes() == reference_serialize([b"ab\x00c", b"", b"xyz"])


def test_bytes_empty_tensor_and_empty_buffer():
    assert pb_utils.serialize_byte_tensor(np.empty((0, 3), np.object_)).size == 0
    out = pb_utils.deserialize_bytes_tensor(b"")
    assert out.shape == (0,) and out.dtype == np.object_


def test_serialize_rejects_numeric_arrays():
    with pytest.raises(pb_utils.TritonModelException):
        pb_utils.serialize_byte_tensor(np.zeros(3, np.float32))


def test_deserialize_accepts_buffers_of_every_kind():
    wire = reference_serialize([b"one", b"three", b""])
    for buf in (wire, bytearray(wire), memoryview(wire), np.frombuffer(wire, np.uint8)):
        assert pb_utils.deserialize_bytes_tensor(buf).tolist() == [b"one", b"three", b""]


@pytest.mark.parametrize("buf", [
    b"\x01\x00",                                 # prefix cut short
    b"\x05\x00\x00\x00abc",                      # element runs past the end
    reference_serialize([b"ok"]) + b"\x02\x00",  # trailing partial prefix
    reference_serialize([b"ab", b"cd"])[:-1],    # last element one byte short
])
def test_malformed_bytes_buffer_raises(buf):
    with pytest.raises(pb_utils.TritonModelException):
        pb_utils.deserialize_bytes_tensor(buf)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=60))
def test_bytes_round_trip_property(items):
    arr = np.empty(len(items), np.object_)
    arr[:] = items
    wire = pb_utils.serialize_byte_tensor(arr)
    assert wire.tobytes() == reference_serialize(items)
    assert pb_utils.deserialize_bytes_tensor(wire.tobytes()).tolist() == items


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 12), st.integers(1, 50), st.data())
def test_bytes_round_trip_equal_lengths(length, count, data):
    # Equal lengths take the vectorised path; check it against the reference.
    items = [data.draw(st.binary(min_size=length, max_size=length)) for _ in range(count)]
    wire = reference_serialize(items)
    assert pb_utils.deserialize_bytes_tensor(wire).tolist() == items


# ------------------------------------------------------------------------------ Tensor

def test_tensor_keeps_contiguous_array_without_copy():
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = pb_utils.Tensor("x", arr)
    assert t.as_numpy() is arr
    assert t.name() == "x"
    assert t.shape() == [3, 4]
    assert t.triton_dtype() == pb_utils.TRITONSERVER_TYPE_FP32
    assert t.is_cpu()


def test_tensor_from_readonly_request_bytes_is_writable_as_on_triton():
    raw = np.arange(4, dtype="<f4").tobytes()
    arr = np.frombuffer(raw, np.float32)
    t = pb_utils.Tensor("x", arr)
    out = t.as_numpy()
    out *= 2  # a model may normalise its input in place
    assert t.as_numpy() is out  # copied once
    np.testing.assert_array_equal(out, [0, 2, 4, 6])
    assert raw == np.arange(4, dtype="<f4").tobytes()  # the request itself is untouched


def test_tensor_keeps_writable_arrays_without_copy():
    arr = np.arange(4, dtype=np.float32)
    assert pb_utils.Tensor("x", arr).as_numpy() is arr


def test_tensor_makes_non_contiguous_arrays_contiguous():
    arr = np.arange(12, dtype=np.int32).reshape(3, 4).T
    out = pb_utils.Tensor("x", arr).as_numpy()
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)
    assert out.shape == (4, 3)


def test_tensor_bytes_and_bad_inputs():
    t = pb_utils.Tensor("s", np.array([b"a", b"bc"], dtype=np.object_))
    assert t.triton_dtype() == pb_utils.TRITONSERVER_TYPE_BYTES
    assert pb_utils.Tensor("s", np.array([b"a"], dtype="S1")).triton_dtype() == 13
    with pytest.raises(pb_utils.TritonModelException, match="empty string"):
        pb_utils.Tensor("", np.zeros(2, np.float32))
    with pytest.raises(pb_utils.TritonModelException, match="np.object_"):
        pb_utils.Tensor("u", np.array(["text"]))


def test_tensor_big_endian_becomes_little_endian():
    arr = np.arange(3, dtype=">i4")
    out = pb_utils.Tensor("x", arr).as_numpy()
    assert out.dtype == np.dtype("<i4")
    np.testing.assert_array_equal(out, [0, 1, 2])


def test_dlpack_capsule_round_trip_shares_memory():
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    capsule = pb_utils.Tensor("a", arr).to_dlpack()
    back = pb_utils.Tensor.from_dlpack("b", capsule)
    assert back.name() == "b" and back.shape() == [2, 3]
    assert back.triton_dtype() == pb_utils.TRITONSERVER_TYPE_FP32
    arr[0, 0] = 42.0
    assert back.as_numpy()[0, 0] == 42.0


def test_dlpack_protocol_both_ways():
    arr = np.arange(5, dtype=np.int64)
    t = pb_utils.Tensor.from_dlpack("p", arr)  # a producer object, not a capsule
    np.testing.assert_array_equal(t.as_numpy(), arr)
    assert t.__dlpack_device__() == (1, 0)
    np.testing.assert_array_equal(np.from_dlpack(t), arr)


def test_dlpack_of_readonly_tensor_and_errors():
    ro = np.frombuffer(np.arange(3, dtype=np.int16).tobytes(), np.int16)
    back = pb_utils.Tensor.from_dlpack("c", pb_utils.Tensor("r", ro).to_dlpack())
    np.testing.assert_array_equal(back.as_numpy(), [0, 1, 2])
    np.testing.assert_array_equal(np.from_dlpack(pb_utils.Tensor("r", ro)), [0, 1, 2])
    with pytest.raises(pb_utils.TritonModelException, match="string"):
        pb_utils.Tensor("s", np.array([b"a"], dtype=np.object_)).to_dlpack()
    with pytest.raises(pb_utils.TritonModelException, match="contiguous"):
        pb_utils.Tensor.from_dlpack("t", np.arange(6.0).reshape(2, 3).T)
    with pytest.raises(pb_utils.TritonModelException, match="not supported"):
        pb_utils.Tensor.from_dlpack("t", [1, 2, 3])
    with pytest.raises(pb_utils.TritonModelException, match="empty string"):
        pb_utils.Tensor.from_dlpack("", np.arange(3))


# ------------------------------------------------------------------------------ requests

def make_request(**overrides):
    kwargs = dict(model_name="m", requested_output_names=["OUT"],
                  inputs=[pb_utils.Tensor("IN", np.ones(2, np.float32))])
    kwargs.update(overrides)
    return pb_utils.InferenceRequest(**kwargs)


def test_request_defaults():
    req = make_request()
    assert req.request_id() == ""
    assert req.correlation_id() == 0
    assert req.flags() == 0
    assert req.timeout() == 0
    assert req.parameters() == "{}"
    assert req.requested_output_names() == {"OUT"}
    assert req.model_name() == "m" and req.model_version() == -1
    assert [t.name() for t in req.inputs()] == ["IN"]
    assert req.is_cancelled() is False
    assert req.trace().get_context() is None
    assert req.release_flags() == pb_utils.TRITONSERVER_REQUEST_RELEASE_ALL


def test_request_accessors():
    req = make_request(request_id="r1", correlation_id="seq-7", model_version=2,
                       flags=pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START, timeout=5,
                       parameters={"k": "v", "n": 3, "b": True},
                       requested_output_names=["A", "B", "A"])
    assert req.request_id() == "r1"
    assert req.correlation_id() == "seq-7"
    assert req.flags() == 1
    assert req.timeout() == 5
    assert json.loads(req.parameters()) == {"k": "v", "n": 3, "b": True}
    assert req.requested_output_names() == {"A", "B"}
    assert req.model_version() == 2
    req.set_flags(pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END)
    assert req.flags() == 2
    req.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
    assert req.release_flags() == 2
    req._set_cancelled()
    assert req.is_cancelled() is True


def test_request_parameters_as_json_string_and_bad_values():
    assert make_request(parameters='{"a": 1}').parameters() == '{"a": 1}'
    with pytest.raises(pb_utils.TritonModelException, match="bool/int/str"):
        make_request(parameters={"a": 1.5})
    with pytest.raises(pb_utils.TritonModelException, match="keys"):
        make_request(parameters={1: "a"})
    with pytest.raises(pb_utils.TritonModelException):
        make_request(parameters="not json")
    with pytest.raises(pb_utils.TritonModelException, match="Correlation ID"):
        make_request(correlation_id=1.5)
    with pytest.raises(pb_utils.TritonModelException):
        make_request(inputs=[np.ones(2)])
    with pytest.raises(TypeError):
        pb_utils.InferenceRequest(inputs=[], requested_output_names=[])


def test_response_sender_of_a_model_built_request_cannot_send():
    req = make_request()
    assert req.get_response_sender() is req.get_response_sender()
    with pytest.raises(pb_utils.TritonModelException, match="no reference to the decoupled state"):
        req.get_response_sender().send(pb_utils.InferenceResponse())


def _sender(decoupled):
    sent = []
    sender = pb_utils.InferenceResponseSender(lambda r, final: sent.append((r, final)), decoupled)
    return sender, sent


def test_decoupled_sender_rules_and_messages():
    sender, sent = _sender(True)
    one, two = pb_utils.InferenceResponse(), pb_utils.InferenceResponse()
    sender.send(one)
    sender.send(two)
    with pytest.raises(pb_utils.TritonModelException, match="^Unable to send response. Unsupported flag provided.$"):
        sender.send(one, flags=2)
    with pytest.raises(pb_utils.TritonModelException, match="must be provided when the response flags is set to zero"):
        sender.send()
    with pytest.raises(TypeError):
        sender.send("not a response")
    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    assert sent == [(one, False), (two, False), (None, True)]
    with pytest.raises(pb_utils.TritonModelException, match="^Unable to send response. Response sender has been closed.$"):
        sender.send(one)
    assert sender.is_cancelled() is False


def test_non_decoupled_sender_sends_exactly_one_response():
    sender, sent = _sender(False)
    with pytest.raises(pb_utils.TritonModelException, match="cannot send complete final before sending a response"):
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    only = pb_utils.InferenceResponse()
    sender.send(only)
    with pytest.raises(pb_utils.TritonModelException, match="cannot send more than one response"):
        sender.send(pb_utils.InferenceResponse())
    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    assert sender._response is only and sent == []  # the server reads it back after execute


def test_cancellation_is_asked_of_the_server_each_time():
    flag = []
    req = make_request()
    req._cancel_check = lambda: bool(flag)
    sender = pb_utils.InferenceResponseSender(lambda r, f: None, True, req.is_cancelled)
    assert not req.is_cancelled() and not sender.is_cancelled()
    flag.append(1)
    assert req.is_cancelled() and sender.is_cancelled()


def test_response_iterator_ends_after_the_final_response_and_restarts():
    cancelled = []
    it = pb_utils.ResponseIterator(cancel=lambda: cancelled.append(1))
    a, b, last = pb_utils.InferenceResponse(), pb_utils.InferenceResponse(), pb_utils.InferenceResponse()
    for response, final in ((a, False), (b, False), (last, True)):
        it._put(response, final)
    assert next(it) is a
    it.cancel()
    assert cancelled == [1]
    assert list(it) == [b, last]
    assert list(it) == [a, b, last]  # iterating again starts over, as in Triton
    it.cancel()
    assert cancelled == [1]  # finished: nothing to cancel

    async def consume():
        it2 = pb_utils.ResponseIterator()
        it2._put(a, False)
        asyncio.get_running_loop().call_later(0.05, it2._put, last, True)
        return [r async for r in it2]
    assert asyncio.run(consume()) == [a, last]


def test_names_ids_and_output_names_may_be_bytes():
    req = pb_utils.InferenceRequest(model_name=b"add_sub", request_id=b"id-1",
                                    requested_output_names=[b"OUTPUT0", "OUTPUT1"],
                                    inputs=[pb_utils.Tensor(b"INPUT0", np.zeros(2, np.float32))])
    assert req.model_name() == "add_sub" and req.request_id() == "id-1"
    assert req.requested_output_names() == {"OUTPUT0", "OUTPUT1"}
    assert req.inputs()[0].name() == "INPUT0"
    assert pb_utils.Tensor.from_dlpack(b"X", np.zeros(2)).name() == "X"
    with pytest.raises(TypeError):
        make_request(model_name=7)
    with pytest.raises(TypeError):
        pb_utils.Tensor(3, np.zeros(1))
    with pytest.raises(pb_utils.TritonModelException, match="Correlation ID"):
        make_request(correlation_id=b"seq")  # Triton takes int or str only


def test_response_accessors_and_lookup():
    out = pb_utils.Tensor("OUT", np.zeros(3, np.float32))
    resp = pb_utils.InferenceResponse(output_tensors=[out], parameters={"p": 1})
    assert resp.output_tensors() == [out]
    assert not resp.has_error() and resp.error() is None
    assert json.loads(resp.parameters()) == {"p": 1}
    assert pb_utils.get_output_tensor_by_name(resp, "OUT") is out
    assert pb_utils.get_output_tensor_by_name(resp, "NOPE") is None

    err = pb_utils.TritonError("bad input", pb_utils.TritonError.INVALID_ARG)
    failed = pb_utils.InferenceResponse(error=err)
    assert failed.has_error() and failed.error() is err
    assert failed.output_tensors() == []
    assert failed.parameters() == "{}"

    with pytest.raises(pb_utils.TritonModelException):
        pb_utils.InferenceResponse(output_tensors=out)
    with pytest.raises(pb_utils.TritonModelException):
        pb_utils.InferenceResponse(output_tensors=[np.zeros(3)])
    with pytest.raises(pb_utils.TritonModelException):
        pb_utils.InferenceResponse(output_tensors=[], error="a string")


def test_get_input_tensor_by_name():
    req = make_request(inputs=[pb_utils.Tensor("A", np.zeros(1)), pb_utils.Tensor("B", np.ones(1))])
    assert pb_utils.get_input_tensor_by_name(req, "B").as_numpy()[0] == 1.0
    assert pb_utils.get_input_tensor_by_name(req, "C") is None


# ------------------------------------------------------------------------------ BLS

class FakeBLS:
    """Stands in for the server: answers every request with its first input doubled."""

    def __init__(self):
        self.calls = []

    def infer(self, request):
        self.calls.append(("infer", request.model_name()))
        x = request.inputs()[0].as_numpy()
        return pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x * 2)])

    async def async_infer(self, request):
        self.calls.append(("async_infer", request.model_name()))
        return self.infer(request)

    def infer_stream(self, request):
        return f"stream of {request.model_name()}"

    async def async_infer_stream(self, request):
        return f"async stream of {request.model_name()}"

    def load_model(self, model_name, config="", files=None):
        self.calls.append(("load", model_name, config, files))

    def unload_model(self, model_name, unload_dependents=False):
        self.calls.append(("unload", model_name, unload_dependents))

    def is_model_ready(self, model_name, model_version=""):
        return model_name == "m"


def test_bls_without_server_raises(monkeypatch):
    monkeypatch.setattr(pb_utils, "_bls", None)
    req = make_request()
    for call in (req.exec, req.async_exec, lambda: pb_utils.load_model("m"),
                 lambda: pb_utils.unload_model("m"), lambda: pb_utils.is_model_ready("m")):
        with pytest.raises(pb_utils.TritonModelException, match="only available inside the server"):
            call()


def test_bls_delegates_to_server_hook(monkeypatch):
    fake = FakeBLS()
    monkeypatch.setattr(pb_utils, "_bls", fake)
    resp = make_request().exec()
    np.testing.assert_array_equal(pb_utils.get_output_tensor_by_name(resp, "OUT").as_numpy(), [2, 2])

    async def model_execute():
        responses = await asyncio.gather(make_request().async_exec(), make_request().async_exec())
        return [r.output_tensors()[0].as_numpy() for r in responses]

    assert [a.tolist() for a in asyncio.run(model_execute())] == [[2, 2], [2, 2]]

    pb_utils.load_model("m", config='{"max_batch_size": 4}', files={"file:1/model.py": b"x"})
    pb_utils.unload_model("m", unload_dependents=True)
    assert pb_utils.is_model_ready("m") is True
    assert pb_utils.is_model_ready("other") is False
    assert fake.calls == [
        ("infer", "m"), ("async_infer", "m"), ("infer", "m"), ("async_infer", "m"), ("infer", "m"),
        ("load", "m", '{"max_batch_size": 4}', {"file:1/model.py": b"x"}),
        ("unload", "m", True),
    ]
    assert make_request().exec(decoupled=True) == "stream of m"
    assert asyncio.run(make_request().async_exec(decoupled=True)) == "async stream of m"


def test_get_model_dir_uses_server_hook(monkeypatch):
    monkeypatch.setattr(pb_utils, "_model_dir_hook", None)
    with pytest.raises(pb_utils.TritonModelException):
        pb_utils.get_model_dir()
    monkeypatch.setattr(pb_utils, "_model_dir_hook", lambda: "/repo/m")
    assert pb_utils.get_model_dir() == "/repo/m"


# ------------------------------------------------------------------------------ errors, logs

def test_triton_error_codes_follow_tritonserver_numbering():
    codes = ["UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE", "UNSUPPORTED",
             "ALREADY_EXISTS", "CANCELLED"]
    for number, name in enumerate(codes):
        assert getattr(pb_utils.TritonError, name) == number
        assert pb_utils.TritonError("m", number).code().name == name
    err = pb_utils.TritonError("boom")
    assert err.code() == pb_utils.TritonError.INTERNAL
    assert err.message() == "boom" and str(err) == "boom"
    with pytest.raises(ValueError):
        pb_utils.TritonError("x", 99)
    with pytest.raises(TypeError):
        pb_utils.TritonError(None)
    assert issubclass(pb_utils.TritonModelException, Exception)


def test_logger_routes_to_python_logging(caplog):
    caplog.set_level(logging.DEBUG, logger="triton.python_model")
    pb_utils.Logger.log_info("i")
    pb_utils.Logger.log_warn("w")
    pb_utils.Logger.log_error("e")
    pb_utils.Logger.log_verbose("v")
    pb_utils.Logger.log("x", pb_utils.Logger.WARNING)
    pb_utils.Logger.log("y", pb_utils.LogLevel.VERBOSE)
    got = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "triton.python_model"]
    assert got == [(logging.INFO, "i"), (logging.WARNING, "w"), (logging.ERROR, "e"),
                   (logging.DEBUG, "v"), (logging.WARNING, "x"), (logging.DEBUG, "y")]
    assert all(r.filename == Path(__file__).name for r in caplog.records)


def _samples(name):
    from backend import custom_metrics
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in custom_metrics.REGISTRY.collect() if f.name == name for s in f.samples}


def test_metric_family_semantics_and_tritons_messages():
    family = pb_utils.MetricFamily("t_counter", "a counter", pb_utils.MetricFamily.COUNTER)
    counter = family.Metric({"m": "x"})
    counter.increment(2)
    counter.increment(3)
    assert counter.value() == 5
    same = pb_utils.MetricFamily("t_counter", "other text", pb_utils.COUNTER).Metric(labels={"m": "x"})
    assert same.value() == 5  # same family name and labels: the same series
    with pytest.raises(pb_utils.TritonModelException, match="^Failed to increment metric value: TRITONSERVER_METRIC_KIND_COUNTER can only be incremented monotonically"):
        counter.increment(-1)
    with pytest.raises(pb_utils.TritonModelException, match="^Failed to set metric value: TRITONSERVER_METRIC_KIND_COUNTER does not support Set"):
        counter.set(1)
    with pytest.raises(pb_utils.TritonModelException, match="Error when creating MetricFamily"):
        pb_utils.MetricFamily("t_counter", "a gauge now", pb_utils.GAUGE)
    with pytest.raises(pb_utils.TritonModelException, match="Error when creating MetricFamily"):
        pb_utils.MetricFamily("bad name", "d", pb_utils.GAUGE)
    gauge = pb_utils.MetricFamily(b"t_gauge", "a gauge", pb_utils.GAUGE).Metric()
    gauge.set(7)
    gauge.increment(-2)
    assert gauge.value() == 5
    with pytest.raises(pb_utils.TritonModelException, match="GAUGE does not support Observe"):
        gauge.observe(1)
    hist_family = pb_utils.MetricFamily("t_hist", "a histogram", pb_utils.HISTOGRAM)
    with pytest.raises(pb_utils.TritonModelException, match="^Failed to create metric. Missing required buckets.$"):
        hist_family.Metric()
    with pytest.raises(pb_utils.TritonModelException, match="^Failed to create metric. Unexpected buckets found.$"):
        family.Metric(buckets=[1.0])
    with pytest.raises(pb_utils.TritonModelException, match="Labels must be a dictionary"):
        family.Metric(labels=["a"])
    with pytest.raises(pb_utils.TritonModelException, match="Error when creating Metric"):
        family.Metric(labels={"m": 1})
    hist = hist_family.Metric(labels={"k": "v"}, buckets=[1.0, 10.0])
    hist.observe(0.5)
    hist.observe(5.0)
    with pytest.raises(pb_utils.TritonModelException, match="HISTOGRAM does not support Value"):
        hist.value()
    got = _samples("t_hist")
    assert got[("t_hist_bucket", (("k", "v"), ("le", "1.0")))] == 1
    assert got[("t_hist_bucket", (("k", "v"), ("le", "10.0")))] == 2
    assert got[("t_hist_bucket", (("k", "v"), ("le", "+Inf")))] == 2
    assert got[("t_hist_count", (("k", "v"),))] == 2 and got[("t_hist_sum", (("k", "v"),))] == 5.5
    assert _samples("t_counter") == {("t_counter", (("m", "x"),)): 5}
    # A series lives as long as a Metric object holds it; a family as long as its objects.
    del counter, same
    assert _samples("t_counter") == {}
    del gauge
    assert _samples("t_gauge") == {}


# ------------------------------------------------------------------------------ ModelConfig

def base_config():
    return {"name": "m", "max_batch_size": 0, "input": [], "output": []}


def test_model_config_from_json_and_helpers():
    cfg = pb_utils.ModelConfig(json.dumps(base_config()))
    cfg.set_max_batch_size(8)
    cfg.set_dynamic_batching()
    cfg.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [3], "optional": False})
    cfg.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": (3,)})
    cfg.set_model_transaction_policy({"decoupled": False})
    d = cfg.as_dict()
    assert d["max_batch_size"] == 8
    assert d["dynamic_batching"] == {}
    assert pb_utils.get_input_config_by_name(d, "IN")["dims"] == [3]
    assert pb_utils.get_output_config_by_name(d, "OUT") == {
        "name": "OUT", "data_type": "TYPE_FP32", "dims": [3]}
    assert pb_utils.get_output_config_by_name(d, "NOPE") is None
    assert pb_utils.using_decoupled_model_transaction_policy(d) is False
    assert pb_utils.using_decoupled_model_transaction_policy(base_config()) is False


def test_model_config_completes_existing_entries():
    cfg_dict = base_config()
    cfg_dict["input"] = [{"name": "IN", "data_type": "TYPE_INVALID", "dims": []}]
    cfg = pb_utils.ModelConfig(cfg_dict)
    cfg.add_input({"name": "IN", "data_type": "TYPE_UINT8", "dims": [-1]})
    assert cfg.as_dict()["input"] == [{"name": "IN", "data_type": "TYPE_UINT8", "dims": [-1]}]


def test_model_config_validation_messages():
    cfg_dict = base_config()
    cfg_dict["max_batch_size"] = 4
    cfg_dict["input"] = [{"name": "IN", "data_type": "TYPE_FP32", "dims": [3]}]
    cfg_dict["sequence_batching"] = {}
    cfg_dict["model_transaction_policy"] = {"decoupled": True}
    cfg = pb_utils.ModelConfig(cfg_dict)
    with pytest.raises(ValueError, match="configuration specified max_batch_size 4, but in "
                       "auto-complete-config function for model 'm' specified max_batch_size 2"):
        cfg.set_max_batch_size(2)
    with pytest.raises(ValueError, match="scheduling_choice as 'sequence_batching'"):
        cfg.set_dynamic_batching()
    with pytest.raises(ValueError, match="configuration expects datatype TYPE_FP32 for input 'IN', "
                       "model provides TYPE_INT32"):
        cfg.add_input({"name": "IN", "data_type": "TYPE_INT32", "dims": [3]})
    with pytest.raises(ValueError, match=r"the model expects dims \[4\] but the model "
                       r"configuration specifies dims \[3\]"):
        cfg.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [4]})
    with pytest.raises(ValueError, match="contains property other than 'name', 'data_type', "
                       "'dims' and 'optional'"):
        cfg.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [1], "reshape": {}})
    with pytest.raises(ValueError, match="contains property other than 'name', 'data_type' and 'dims'"):
        cfg.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [1], "optional": True})
    with pytest.raises(ValueError, match="is missing 'name' property"):
        cfg.add_output({"data_type": "TYPE_FP32", "dims": [1]})
    with pytest.raises(ValueError, match="'Y' in auto-complete-config function for model 'm' "
                       "is missing 'dims' property"):
        cfg.add_output({"name": "Y", "data_type": "TYPE_FP32"})
    with pytest.raises(ValueError, match="contains property other than 'decoupled'"):
        cfg.set_model_transaction_policy({"other": 1})
    with pytest.raises(ValueError, match="which is already set to 'True'"):
        cfg.set_model_transaction_policy({"decoupled": False})
    assert pb_utils.using_decoupled_model_transaction_policy(cfg.as_dict()) is True


# ------------------------------------------------------------------------------ add_sub model

def test_add_sub_config_parses_as_triton_model_config():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    cfg = text_format.Parse((ADD_SUB_DIR / "config.pbtxt").read_text(),
                            model_config_pb2.ModelConfig())
    assert (cfg.name, cfg.backend, cfg.max_batch_size) == ("add_sub", "python", 0)
    fp32 = model_config_pb2.DataType.Value("TYPE_FP32")
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.input] == [
        ("INPUT0", fp32, [4]), ("INPUT1", fp32, [4])]
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.output] == [
        ("OUTPUT0", fp32, [4]), ("OUTPUT1", fp32, [4])]


def load_add_sub():
    # A unique module name, as the server does, so several "1/model.py" never collide.
    spec = importlib.util.spec_from_file_location(
        "test_pb_utils_add_sub_1_model", ADD_SUB_DIR / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_sub_args():
    # The seven keys Triton passes to initialize(); model_config is Triton's JSON for the
    # config (original field names, enums as names, int64 as numbers).
    tensor = {"data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [4],
              "is_shape_tensor": False, "allow_ragged_batch": False, "optional": False}
    config = {
        "name": "add_sub", "platform": "", "backend": "python", "max_batch_size": 0,
        "input": [dict(tensor, name="INPUT0"), dict(tensor, name="INPUT1")],
        "output": [{"name": n, "data_type": "TYPE_FP32", "dims": [4], "label_filename": "",
                    "is_shape_tensor": False} for n in ("OUTPUT0", "OUTPUT1")],
        "instance_group": [{"name": "add_sub_0", "kind": "KIND_CPU", "count": 1}],
        "parameters": {},
    }
    return {
        "model_config": json.dumps(config),
        "model_instance_kind": "CPU",
        "model_instance_name": "add_sub_0_0",
        "model_instance_device_id": "0",
        "model_repository": str(ADD_SUB_DIR),
        "model_version": "1",
        "model_name": "add_sub",
    }


def test_add_sub_model_runs_in_process(caplog):
    model = load_add_sub().TritonPythonModel()
    model.initialize(add_sub_args())
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32))
             for _ in range(2)]
    requests = [
        pb_utils.InferenceRequest(
            request_id=str(i), model_name="add_sub",
            requested_output_names=["OUTPUT0", "OUTPUT1"],
            inputs=[pb_utils.Tensor("INPUT0", a), pb_utils.Tensor("INPUT1", b)])
        for i, (a, b) in enumerate(pairs)
    ]
    responses = model.execute(requests)
    assert len(responses) == 2
    for (a, b), resp in zip(pairs, responses):
        assert not resp.has_error()
        out0 = pb_utils.get_output_tensor_by_name(resp, "OUTPUT0")
        out1 = pb_utils.get_output_tensor_by_name(resp, "OUTPUT1")
        assert out0.triton_dtype() == out1.triton_dtype() == pb_utils.TRITONSERVER_TYPE_FP32
        np.testing.assert_array_equal(out0.as_numpy(), a + b)
        np.testing.assert_array_equal(out1.as_numpy(), a - b)
    caplog.set_level(logging.INFO, logger="triton.python_model")
    model.finalize()
    assert "add_sub: finalize" in caplog.text
