"""Request validation with Triton's messages and codes (triton-protocol.md §3): each error is
checked for its gRPC code and for a message naming the model and the tensor."""

import struct

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from tests.backend.rpc_helpers import expect_error, infer_input, outputs, raw_request, raw_stub

A = np.zeros(4, np.float32)


@pytest.fixture(scope="module")
def stub(server):
    return raw_stub(server.url)


def test_unknown_model(triton_client):
    with expect_error("INVALID_ARGUMENT", "Request for unknown model: 'no_such_model' is not found"):
        triton_client.infer("no_such_model", [infer_input("INPUT0", A)])


def test_unknown_version(triton_client):
    with expect_error("NOT_FOUND", "Request for unknown model: 'versioned' version 2 is not found"):
        triton_client.infer("versioned", [infer_input("INPUT0", np.ones(1, np.int32))], model_version="2")


def test_bad_version_string(triton_client):
    with expect_error("INVALID_ARGUMENT", "failed to get model version from specified version string 'v1'",
                      "version should be an integral value > 0"):
        triton_client.infer("identity", [infer_input("INPUT0", np.ones((1, 1), np.float32))], model_version="v1")


def test_model_not_ready(triton_client):
    with expect_error("UNAVAILABLE", "Request for unknown model: 'fail_load'"):
        triton_client.infer("fail_load", [infer_input("INPUT0", np.ones(1, np.float32))])


def test_unknown_input(triton_client):
    with expect_error("INVALID_ARGUMENT", "unexpected inference input 'BOGUS' for model 'add_sub'"):
        triton_client.infer("add_sub", [infer_input("INPUT0", A), infer_input("BOGUS", A)])


def test_missing_input(triton_client):
    with expect_error("INVALID_ARGUMENT",
                      "expected 2 inputs but got 1 inputs for model 'add_sub'. Got input(s) ['INPUT0'], "
                      "but missing required input(s) ['INPUT1']. Please provide all required input(s)."):
        triton_client.infer("add_sub", [infer_input("INPUT0", A)])


def test_input_given_twice(stub):
    req = raw_request("add_sub", {"INPUT0": A, "INPUT1": A})
    req.inputs.add(name="INPUT0", datatype="FP32", shape=[4])
    req.raw_input_contents.append(A.tobytes())
    with expect_error("INVALID_ARGUMENT", "'INPUT0'", "'add_sub'"):
        stub.ModelInfer(req, timeout=30)


def test_wrong_datatype(triton_client):
    with expect_error("INVALID_ARGUMENT",
                      "inference input 'INPUT1' data-type is 'FP64', but model 'add_sub' expects 'FP32'"):
        triton_client.infer("add_sub", [infer_input("INPUT0", A), infer_input("INPUT1", A.astype(np.float64))])


def test_unknown_datatype_name(stub):
    req = raw_request("add_sub", {"INPUT0": A, "INPUT1": A})
    req.inputs[1].datatype = "FLOAT"
    with expect_error("INVALID_ARGUMENT", "'FLOAT'", "'INPUT1'", "'add_sub'"):
        stub.ModelInfer(req, timeout=30)


def test_wrong_shape_without_batching(triton_client):
    with expect_error("INVALID_ARGUMENT",
                      "unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [4], got [5]"):
        triton_client.infer("add_sub", [infer_input("INPUT0", np.zeros(5, np.float32)), infer_input("INPUT1", A)])


def test_wrong_shape_with_batching_has_triton_note(triton_client):
    with expect_error("INVALID_ARGUMENT",
                      "unexpected shape for input 'INPUT0' for model 'add_onnx'. Expected [-1,4], got [1,5]",
                      "NOTE: Setting a non-zero max_batch_size"):
        triton_client.infer("add_onnx", [infer_input("INPUT0", np.zeros((1, 5), np.float32)),
                                         infer_input("INPUT1", np.zeros((1, 5), np.float32))])


def test_negative_dimension_rejected(stub):
    req = raw_request("identity", {"INPUT0": np.zeros((1, 2), np.float32)})
    del req.inputs[0].shape[:]
    req.inputs[0].shape.extend([1, -2])
    with expect_error("INVALID_ARGUMENT", "unexpected shape for input 'INPUT0' for model 'identity'"):
        stub.ModelInfer(req, timeout=30)


def test_batch_larger_than_max_batch_size(triton_client):
    with expect_error("INVALID_ARGUMENT", "inference request batch-size must be <= 8 for 'identity'"):
        triton_client.infer("identity", [infer_input("INPUT0", np.zeros((9, 2), np.float32))])


def test_batch_sizes_disagree(triton_client):
    with expect_error("INVALID_ARGUMENT", "input 'INPUT1' batch size does not match other inputs for 'add_onnx'"):
        triton_client.infer("add_onnx", [infer_input("INPUT0", np.zeros((2, 4), np.float32)),
                                         infer_input("INPUT1", np.zeros((3, 4), np.float32))])


def test_no_shape_with_batching(stub):
    req = raw_request("identity", {"INPUT0": np.zeros((1, 2), np.float32)})
    del req.inputs[0].shape[:]
    with expect_error("INVALID_ARGUMENT", "input 'INPUT0' has no shape but model requires batch dimension "
                                          "for 'identity'"):
        stub.ModelInfer(req, timeout=30)


def test_byte_size_mismatch(stub):
    req = raw_request("add_sub", {"INPUT0": A, "INPUT1": A})
    req.raw_input_contents[1] = A.tobytes()[:15]
    with expect_error("INVALID_ARGUMENT",
                      "input byte size mismatch for input 'INPUT1' for model 'add_sub'. Expected 16, got 15"):
        stub.ModelInfer(req, timeout=30)


def _bytes_request(payload: bytes, count: int):
    req = pb.ModelInferRequest(model_name="echo_bytes")
    req.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, count])
    req.raw_input_contents.append(payload)
    return req


@pytest.mark.parametrize("payload, count, fragment", [
    (struct.pack("<I", 2) + b"ab" + b"\x01\x00", 2, "incomplete string length indicator"),
    (struct.pack("<I", 9) + b"abc", 1, "runs past the end"),
    ((struct.pack("<I", 1) + b"a") * 3, 2, "unexpected number of string elements"),
    (struct.pack("<I", 1) + b"a", 2, "expected 2 string elements"),
])
def test_malformed_bytes(stub, payload, count, fragment):
    with expect_error("INVALID_ARGUMENT", fragment, "for inference input 'INPUT0' for model 'echo_bytes'"):
        stub.ModelInfer(_bytes_request(payload, count), timeout=30)


def test_unknown_requested_output(triton_client):
    with expect_error("INVALID_ARGUMENT", "unexpected inference output 'NOPE' for model 'add_sub'"):
        triton_client.infer("add_sub", [infer_input("INPUT0", A), infer_input("INPUT1", A)],
                            outputs=outputs("OUTPUT0", "NOPE"))


def test_missing_raw_contents(stub):
    req = raw_request("add_sub", {"INPUT0": A, "INPUT1": A})
    del req.raw_input_contents[1]
    with expect_error("INVALID_ARGUMENT",
                      "unable to find data for input tensor 'INPUT1' for model 'add_sub' in request."):
        stub.ModelInfer(req, timeout=30)


def test_extra_raw_contents(stub):
    req = raw_request("add_sub", {"INPUT0": A, "INPUT1": A})
    req.raw_input_contents.append(A.tobytes())
    with expect_error("INVALID_ARGUMENT", "raw input contents for model 'add_sub'"):
        stub.ModelInfer(req, timeout=30)


def test_contents_and_raw_together(stub):
    req = raw_request("add_sub", {"INPUT1": A})
    t = req.inputs.add(name="INPUT0", datatype="FP32", shape=[4])
    t.contents.fp32_contents.extend([0, 0, 0, 0])
    with expect_error("INVALID_ARGUMENT", "contents field must not be specified when using raw_input_contents "
                                          "for 'INPUT0' for model 'add_sub'"):
        stub.ModelInfer(req, timeout=30)


@pytest.mark.parametrize("field,values,message", [
    # typed contents of the wrong kind
    ("int_contents", [1, 2, 3, 4],
     "unexpected explicit tensor data for input tensor 'INPUT0' for model 'add_sub' of type 'FP32'"),
    # typed contents with the wrong count
    ("fp32_contents", [1, 2, 3], "input 'INPUT0' for model 'add_sub'"),
])
def test_typed_contents_that_do_not_fit(stub, field, values, message):
    req = pb.ModelInferRequest(model_name="add_sub")
    for name in ("INPUT0", "INPUT1"):
        t = req.inputs.add(name=name, datatype="FP32", shape=[4])
        getattr(t.contents, field).extend(values)
    with expect_error("INVALID_ARGUMENT", message):
        stub.ModelInfer(req, timeout=30)


def test_reserved_parameter(stub):
    req = raw_request("add_sub", {"INPUT0": A, "INPUT1": A})
    req.parameters["triton_secret"].string_param = "x"
    with expect_error("INVALID_ARGUMENT", "parameter keys starting with 'triton_' are reserved",
                      "'triton_secret'", "'add_sub'"):
        stub.ModelInfer(req, timeout=30)


def test_validation_errors_leave_the_server_serving(triton_client):
    r = triton_client.infer("add_sub", [infer_input("INPUT0", A), infer_input("INPUT1", A + 1)])
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), A - (A + 1))
