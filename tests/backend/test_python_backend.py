"""Triton's Python backend contract over real RPCs: add_sub as written for Triton, initialize's
args, auto_complete_config, async execute, BLS (exec / async_exec), errors raised in or
returned from execute, isolated model modules, the model logger."""

import json
import os

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.backend.rpc_helpers import expect_error, infer_input
from tests.serverproc import start_server

A = np.array([1, 2, 3, 4], np.float32)
B = np.array([10, 20, 30, 40], np.float32)


def _pair(a=A, b=B):
    return [infer_input("INPUT0", a), infer_input("INPUT1", b)]


def test_tritons_add_sub_example_runs_unchanged(triton_client):
    result = triton_client.infer("add_sub", _pair())
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), A + B)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), A - B)
    assert result.as_numpy("OUTPUT0").dtype == np.float32


def test_initialize_gets_tritons_seven_args(triton_client, test_repo):
    result = triton_client.infer("introspect", [infer_input("INPUT0", np.array([0], np.int32))])
    args = json.loads(result.as_numpy("ARGS")[0])
    assert set(args) == {"model_config", "model_instance_kind", "model_instance_name",
                         "model_instance_device_id", "model_repository", "model_version", "model_name"}
    assert all(isinstance(v, str) for v in args.values())
    assert (args["model_name"], args["model_version"]) == ("introspect", "1")
    assert (args["model_instance_kind"], args["model_instance_name"]) == ("CPU", "introspect_0_0")
    assert args["model_instance_device_id"] == "0"
    assert os.path.realpath(args["model_repository"]) == os.path.realpath(os.path.join(test_repo, "introspect"))
    config = json.loads(args["model_config"])
    assert config["name"] == "introspect"
    # int64 fields are JSON numbers, as Triton hands them over (not protobuf's strings).
    assert config["max_batch_size"] == 0
    assert config["input"][0]["dims"] == [1]
    assert config["instance_group"][0]["count"] == 1
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["version_policy"] == {"latest": {"num_versions": 1}}


def test_auto_complete_config_declares_the_tensors(triton_client):
    meta = triton_client.get_model_metadata("introspect")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("INPUT0", "INT32", [1])]
    assert [t.name for t in meta.outputs] == ["ARGS", "REQUEST"]


def test_async_execute_with_async_bls(triton_client):
    result = triton_client.infer("async_bls", _pair())
    np.testing.assert_array_equal(result.as_numpy("SUM"), A + B)
    np.testing.assert_array_equal(result.as_numpy("DIFF"), A - B)


def test_bls_exec_calls_another_model(triton_client):
    np.testing.assert_array_equal(triton_client.infer("bls_add", _pair()).as_numpy("OUTPUT0"), A + B)


def test_bls_error_comes_back_as_an_error_response(triton_client):
    with expect_error("INVALID_ARGUMENT", "Request for unknown model: 'no_such_model' is not found"):
        triton_client.infer("bls_add", _pair(), parameters={"bls_model": "no_such_model"})
    # add_onnx wants a batch dimension: the called model's validation message comes back.
    with expect_error("INVALID_ARGUMENT", "unexpected shape for input 'INPUT0' for model 'add_onnx'"):
        triton_client.infer("bls_add", _pair(), parameters={"bls_model": "add_onnx"})


def test_exception_in_execute_is_internal_and_names_the_instance(triton_client):
    with expect_error("INTERNAL", "Failed to process the request(s) for model 'raises_0_0', message: ",
                      "marker 666 found in INPUT0"):
        triton_client.infer("raises", [infer_input("INPUT0", np.array([1, 666], np.int32))])
    # The model and the server keep serving.
    x = np.array([5, 6], np.int32)
    np.testing.assert_array_equal(triton_client.infer("raises", [infer_input("INPUT0", x)]).as_numpy("OUTPUT0"), x)
    np.testing.assert_array_equal(triton_client.infer("add_sub", _pair()).as_numpy("OUTPUT0"), A + B)


def test_error_response_keeps_its_code(triton_client):
    with expect_error("INVALID_ARGUMENT", "marker 777 is not a valid input"):
        triton_client.infer("raises", [infer_input("INPUT0", np.array([777], np.int32))])


def test_models_with_the_same_file_names_do_not_clash(triton_client):
    x = np.array([1], np.int32)
    assert triton_client.infer("twin_a", [infer_input("INPUT0", x)]).as_numpy("OUTPUT0")[0] == 101
    assert triton_client.infer("twin_b", [infer_input("INPUT0", x)]).as_numpy("OUTPUT0")[0] == 201


def test_each_version_is_its_own_module(triton_client):
    x = np.array([0], np.int32)
    for version, expected in (("1", 1), ("3", 3), ("", 3)):
        result = triton_client.infer("versioned", [infer_input("INPUT0", x)], model_version=version)
        assert result.as_numpy("VERSION")[0] == expected
        assert result.get_response().model_version == str(expected)


def test_model_logger_goes_to_the_server_log(server):
    assert "introspect: initialized as introspect_0_0" in server.log


def test_a_failing_initialize_is_reported(triton_client):
    index = {m.name: m for m in triton_client.get_model_repository_index().models}
    assert index["fail_load"].state == "UNAVAILABLE"
    assert "fail_load refuses to initialize" in index["fail_load"].reason


# ---- execute's contract, with a model uploaded to an explicit-mode server --------------------

CONTRACT_PY = b'''
import json

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        mode = json.loads(requests[0].parameters()).get("mode", "")
        ok = [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([1], np.int32)),
                                          pb_utils.Tensor("NOT_IN_CONFIG", np.array([2], np.int32))])
              for _ in requests]
        if mode == "tuple":
            return tuple(ok)
        if mode == "short":
            return ok[:-1]
        if mode == "model_exception":
            raise pb_utils.TritonModelException("the model says no")
        if mode == "missing_output":
            return [pb_utils.InferenceResponse([]) for _ in requests]
        if mode:
            code = getattr(pb_utils.TritonError, mode)
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(f"failed with {mode}", code))
                    for _ in requests]
        return ok
'''
CONTRACT_CONFIG = {"backend": "python",
                   "input": [{"name": "IN", "data_type": "TYPE_INT32", "dims": [1]}],
                   "output": [{"name": "OUT", "data_type": "TYPE_INT32", "dims": [1]}]}


@pytest.fixture(scope="module")
def contract(test_repo):
    with start_server(test_repo, "--model-control-mode", "explicit") as s:
        client = grpcclient.InferenceServerClient(s.url)
        client.load_model("contract", config=json.dumps(CONTRACT_CONFIG), files={"file:1/model.py": CONTRACT_PY})
        yield client
        client.close()


def _contract(client, mode=""):
    return client.infer("contract", [infer_input("IN", np.array([0], np.int32))], parameters={"mode": mode})


def test_outputs_not_in_the_config_are_pruned(contract):
    resp = _contract(contract).get_response()
    assert [o.name for o in resp.outputs] == ["OUT"]


@pytest.mark.parametrize("mode, fragment", [
    ("tuple", "Expected a list in the execute return, found type 'tuple'"),
    ("short", "Number of InferenceResponse objects do not match the number of InferenceRequest objects"),
    ("model_exception", "message: the model says no"),
    ("missing_output", "OUT"),
])
def test_execute_contract_violations_are_internal(contract, mode, fragment):
    with expect_error("INTERNAL", fragment, "contract"):
        _contract(contract, mode)


@pytest.mark.parametrize("triton_code, grpc_code", [
    ("UNKNOWN", "UNKNOWN"), ("INTERNAL", "INTERNAL"), ("NOT_FOUND", "NOT_FOUND"),
    ("INVALID_ARG", "INVALID_ARGUMENT"), ("UNAVAILABLE", "UNAVAILABLE"), ("UNSUPPORTED", "UNIMPLEMENTED"),
    ("ALREADY_EXISTS", "ALREADY_EXISTS"), ("CANCELLED", "CANCELLED"),
])
def test_triton_error_codes_map_to_grpc_codes(contract, triton_code, grpc_code):
    with expect_error(grpc_code, f"failed with {triton_code}"):
        _contract(contract, triton_code)
