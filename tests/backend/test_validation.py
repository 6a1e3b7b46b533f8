"""Request validation with Triton's messages and codes (triton-protocol.md §3), as tritonclient
surfaces them: each error is checked for its gRPC code and for a message naming the model and the
tensor. Requests tritonclient cannot send (malformed bytes, typed contents, duplicate inputs, reserved
parameters, ...) are the raw-gRPC matrix of tests/reliability/test_bad_input.py."""

import numpy as np

from tests.backend.rpc_helpers import expect_error, infer_input, outputs

A = np.zeros(4, np.float32)


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


def test_wrong_datatype(triton_client):
    with expect_error("INVALID_ARGUMENT",
                      "inference input 'INPUT1' data-type is 'FP64', but model 'add_sub' expects 'FP32'"):
        triton_client.infer("add_sub", [infer_input("INPUT0", A), infer_input("INPUT1", A.astype(np.float64))])


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


def test_batch_larger_than_max_batch_size(triton_client):
    with expect_error("INVALID_ARGUMENT", "inference request batch-size must be <= 8 for 'identity'"):
        triton_client.infer("identity", [infer_input("INPUT0", np.zeros((9, 2), np.float32))])


def test_batch_sizes_disagree(triton_client):
    with expect_error("INVALID_ARGUMENT", "input 'INPUT1' batch size does not match other inputs for 'add_onnx'"):
        triton_client.infer("add_onnx", [infer_input("INPUT0", np.zeros((2, 4), np.float32)),
                                         infer_input("INPUT1", np.zeros((3, 4), np.float32))])


def test_unknown_requested_output(triton_client):
    with expect_error("INVALID_ARGUMENT", "unexpected inference output 'NOPE' for model 'add_sub'"):
        triton_client.infer("add_sub", [infer_input("INPUT0", A), infer_input("INPUT1", A)],
                            outputs=outputs("OUTPUT0", "NOPE"))


def test_validation_errors_leave_the_server_serving(triton_client):
    r = triton_client.infer("add_sub", [infer_input("INPUT0", A), infer_input("INPUT1", A + 1)])
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), A - (A + 1))
