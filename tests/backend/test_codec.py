"""The gRPC edge in process (backend/grpc_codec.py over backend/tensor_io.py, backend/bytes_tensor.py):
input tensors are views of the request bytes, outputs leave as one raw entry each in order, BYTES
use 4-byte little-endian length prefixes."""

import struct

import numpy as np
import pytest
from google.protobuf import text_format

from backend import bytes_tensor, grpc_wire, tensor_io
from backend import grpc_codec as codec
from backend.model import Model
from backend.shm import SharedMemoryManager
from backend.types import InferResponse, InferResult
from proto import grpc_service_pb2 as pb
from proto import model_config_pb2 as mc

CONFIG = """
name: "m" backend: "python" max_batch_size: 4
input [ { name: "A" data_type: TYPE_FP32 dims: [ 3 ] }, { name: "S" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "X" data_type: TYPE_INT16 dims: [ 3 ] }, { name: "Y" data_type: TYPE_STRING dims: [ -1 ] } ]
"""


@pytest.fixture(scope="module")
def model():
    return Model(text_format.Parse(CONFIG, mc.ModelConfig()), 1, "/nowhere")


def _request(a: np.ndarray, strings: bytes, n: int) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="m", id="r")
    msg.inputs.add(name="A", datatype="FP32", shape=a.shape)
    msg.inputs.add(name="S", datatype="BYTES", shape=[a.shape[0], n])
    msg.raw_input_contents.extend([a.tobytes(), strings])
    return msg


def _wire(items):
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def test_inputs_are_views_of_the_request_bytes(model):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    received = _request(a, _wire([b"p", b"qq"]), 1).SerializeToString()
    parsed = grpc_wire.parse_infer_request(received)
    req = tensor_io.prepare(codec.decode_request(parsed), model, SharedMemoryManager())
    arr = req.inputs["A"]
    np.testing.assert_array_equal(arr, a)
    assert not arr.flags.owndata and not arr.flags.writeable  # np.frombuffer, no copy
    base = arr
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview) and base.obj is received  # a view of the received bytes
    assert req.inputs["S"].tolist() == [[b"p"], [b"qq"]]


@pytest.mark.parametrize("n_raw", [0, 1, 3])
def test_wire_level_split_equals_protobuf(n_raw):
    msg = pb.ModelInferRequest(model_name="m", id="x")
    msg.parameters["k"].int64_param = -5
    for i in range(n_raw):
        msg.inputs.add(name=f"I{i}", datatype="UINT8", shape=[300 * i])
        msg.raw_input_contents.append(bytes(range(256)) * i + b"\x80" * i)
    msg.outputs.add(name="O")
    data = msg.SerializeToString()
    parsed = grpc_wire.parse_infer_request(data)
    raw = parsed.raw if parsed.raw is not None else parsed.msg.raw_input_contents
    assert [bytes(r) for r in raw] == list(msg.raw_input_contents)
    rest = pb.ModelInferRequest()
    rest.CopyFrom(parsed.msg)
    rest.raw_input_contents.extend(bytes(r) for r in raw)
    assert rest == msg


def test_malformed_request_still_raises_protobufs_error():
    from google.protobuf.message import DecodeError
    for data in (b"\x0a\xff", b"\x3a\x05ab", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"):
        with pytest.raises(DecodeError):
            grpc_wire.parse_infer_request(data)


def test_response_records_parse_as_the_message():
    result = InferResult("m", "1", "id", {"p": 3}, [])
    chunks = codec.encode_response(result)
    assert pb.ModelInferResponse.FromString(grpc_wire.serialize(chunks)).id == "id"
    stream = pb.ModelStreamInferResponse.FromString(grpc_wire.serialize(codec.encode_stream_response(result)))
    assert stream.infer_response.parameters["p"].int64_param == 3 and not stream.error_message


def test_outputs_one_raw_entry_each_in_requested_order(model):
    a = np.zeros((1, 3), np.float32)
    msg = _request(a, _wire([b"s"]), 1)
    msg.outputs.add(name="Y")
    msg.outputs.add(name="X")
    req = tensor_io.prepare(codec.decode_request(msg), model, SharedMemoryManager())
    x = np.array([[1, -2, 3]], np.int64)  # converted to the configured INT16
    y = np.array([[b"hi", b""]], np.object_)
    outputs = tensor_io.outputs(InferResponse("m", "1", "r", {"X": x, "Y": y}), req, model, SharedMemoryManager())
    resp = pb.ModelInferResponse.FromString(grpc_wire.serialize(codec.encode_response(InferResult("m", "1", "r", {}, outputs))))
    assert resp.id == "r"
    assert [(o.name, o.datatype, list(o.shape)) for o in resp.outputs] == [("Y", "BYTES", [1, 2]), ("X", "INT16", [1, 3])]
    assert resp.raw_output_contents[0] == _wire([b"hi", b""])
    assert resp.raw_output_contents[1] == np.array([1, -2, 3], "<i2").tobytes()


@pytest.mark.parametrize("items", [
    [], [b""], [b"a"], [b"abc"] * 5, [b"", b"x", b"", b"yz"], [b"\x00\x01", b"\x00"],
    [bytes(range(256)) * 3, b"tail"], [b"same"] * 1000, [b""] * 3, [b"a\x00", b"\x00\x00"],
    [b"ab", b"cd", b"efg"],
])
def test_bytes_round_trip_and_wire_format(items):
    array = np.empty(len(items), np.object_)
    array[:] = items
    wire = bytes_tensor.serialize(array)
    assert wire == _wire(items)
    back = bytes_tensor.deserialize(wire, len(items))
    assert back.dtype == np.object_ and back.tolist() == items


def test_bytes_from_str_and_fixed_width_arrays():
    assert bytes_tensor.serialize(np.array(["h\u00e9", "x"], np.object_)) == _wire(["h\u00e9".encode(), b"x"])
    assert bytes_tensor.serialize(np.array([b"ab", b"c"], np.bytes_)) == _wire([b"ab", b"c"])


@pytest.mark.parametrize("wire, count, message", [
    (_wire([b"ab"]) + b"\x01", 2, "incomplete string length indicator"),
    (struct.pack("<I", 5) + b"ab", 1, "runs past the end"),
    (_wire([b"a", b"b", b"c"]), 2, "unexpected number of string elements"),
    (_wire([b"ab", b"cd"]), 3, "expected 3 string elements, got 2"),
    (_wire([b"ab"] * 4), 2, "unexpected number of string elements"),
])
def test_malformed_bytes(wire, count, message):
    with pytest.raises(ValueError, match=message):
        bytes_tensor.deserialize(wire, count)
