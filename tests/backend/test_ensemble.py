"""Ensembles over real RPCs: results of ensemble_add (add_onnx -> identity), a failing step
named with its original code, checks at load time (config overrides on an explicit-mode
server), independent steps running at once."""

import copy
import json
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.backend.rpc_helpers import expect_error, infer_input
from tests.serverproc import start_server


def test_ensemble_add(triton_client):
    a = np.arange(24, dtype=np.float32).reshape(6, 4)
    b = np.ones((6, 4), np.float32)
    result = triton_client.infer("ensemble_add", [infer_input("INPUT0", a), infer_input("INPUT1", b)],
                                 request_id="ens-1")
    assert result.get_response().id == "ens-1"
    assert result.get_response().model_name == "ensemble_add"
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_ensemble_validates_its_own_inputs(triton_client):
    with expect_error("INVALID_ARGUMENT", "inference request batch-size must be <= 8 for 'ensemble_add'"):
        a = np.ones((9, 4), np.float32)
        triton_client.infer("ensemble_add", [infer_input("INPUT0", a), infer_input("INPUT1", a)])


@pytest.mark.parametrize("marker, code, message", [
    (666, "INTERNAL", "Failed to process the request(s) for model 'raises_0_0', message: "),
    (777, "INVALID_ARGUMENT", "marker 777 is not a valid input"),
])
def test_failing_step_is_named_and_keeps_its_code(triton_client, marker, code, message):
    with expect_error(code, "in ensemble 'ensemble_raises', step 0 (model 'raises'): " + message):
        triton_client.infer("ensemble_raises", [infer_input("IN", np.array([marker], np.int32))])
    x = np.array([1, 2], np.int32)
    np.testing.assert_array_equal(triton_client.infer("ensemble_raises", [infer_input("IN", x)]).as_numpy("OUT"), x)


# ---- load-time checks, on an explicit-mode server with config overrides ----------------------

def _tensor(name, dims, data_type="TYPE_FP32"):
    return {"name": name, "data_type": data_type, "dims": dims}


BASE = {
    "platform": "ensemble", "max_batch_size": 8,
    "input": [_tensor("INPUT0", [4]), _tensor("INPUT1", [4])],
    "output": [_tensor("OUTPUT0", [4]), _tensor("OUTPUT1", [4])],
    "ensemble_scheduling": {"step": [
        {"model_name": "add_onnx", "model_version": -1,
         "input_map": {"INPUT0": "INPUT0", "INPUT1": "INPUT1"},
         "output_map": {"OUTPUT0": "sum", "OUTPUT1": "OUTPUT1"}},
        {"model_name": "identity", "model_version": -1,
         "input_map": {"INPUT0": "sum"}, "output_map": {"OUTPUT0": "OUTPUT0"}},
    ]},
}


def _variant(change):
    config = copy.deepcopy(BASE)
    change(config)
    return json.dumps(config)


def _steps(config):
    return config["ensemble_scheduling"]["step"]


@pytest.fixture(scope="module")
def explicit(test_repo):
    with start_server(test_repo, "--model-control-mode", "explicit") as s:
        client = grpcclient.InferenceServerClient(s.url)
        yield client
        client.close()


def test_override_that_is_valid_loads_and_serves(explicit):
    explicit.load_model("ensemble_add", config=json.dumps(BASE))
    assert explicit.is_model_ready("add_onnx") and explicit.is_model_ready("identity")
    a = np.ones((1, 4), np.float32)
    result = explicit.infer("ensemble_add", [infer_input("INPUT0", a), infer_input("INPUT1", a)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)
    explicit.unload_model("ensemble_add")


INVALID = {
    "unmapped step input": (lambda c: _steps(c)[0]["input_map"].pop("INPUT1"),
                            "input INPUT1 of model add_onnx (step 0) is not mapped"),
    "mapped to a missing input": (lambda c: _steps(c)[1]["input_map"].update(EXTRA="sum"),
                                  "is mapped to non-existing input EXTRA of model identity"),
    "mapped from a missing output": (lambda c: _steps(c)[1]["output_map"].update(NOPE="x"),
                                     "mapped from non-existing output NOPE of model identity"),
    "datatype disagrees": (lambda c: c["input"][0].update(data_type="TYPE_INT32"),
                           "inconsistent data type for tensor INPUT0"),
    "shape disagrees": (lambda c: c["input"][1].update(dims=[5]), "inconsistent shape for tensor INPUT1"),
    "tensor produced twice": (lambda c: _steps(c)[1]["output_map"].update(OUTPUT0="OUTPUT1"),
                              "is produced more than once"),
    "output never produced": (lambda c: c["output"].append(_tensor("OUTPUT2", [4])),
                              "ensemble output OUTPUT2 is not produced by any step"),
    "cycle": (lambda c: _steps(c)[0]["input_map"].update(INPUT1="OUTPUT0"), "cycle"),
    "batch too large for a step": (lambda c: c.update(max_batch_size=16),
                                   "ensemble ensemble_add allows maximum batch size 16, but it contains "
                                   "model add_onnx which only allows maximum batch size to be 8"),
    "unknown step model": (lambda c: _steps(c)[1].update(model_name="no_such_model"), "no_such_model"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_ensembles_fail_to_load(explicit, case):
    change, fragment = INVALID[case]
    with expect_error("INVALID_ARGUMENT", fragment):
        explicit.load_model("ensemble_add", config=_variant(change))
    index = {m.name: m for m in explicit.get_model_repository_index().models}
    assert index["ensemble_add"].state == "UNAVAILABLE"
    assert fragment in index["ensemble_add"].reason


def test_independent_steps_run_at_once(explicit):
    """Two `slow` steps that need only the ensemble input start together (slow has two
    instances): the ensemble takes one step's time, not two. Request parameters reach the steps."""
    config = {
        "platform": "ensemble", "max_batch_size": 0,
        "input": [_tensor("IN", [1], "TYPE_INT32")],
        "output": [_tensor("A", [1], "TYPE_INT32"), _tensor("B", [1], "TYPE_STRING")],
        "ensemble_scheduling": {"step": [
            {"model_name": "slow", "input_map": {"INPUT0": "IN"}, "output_map": {"OUTPUT0": "A"}},
            {"model_name": "slow", "input_map": {"INPUT0": "IN"}, "output_map": {"INSTANCE": "B"}},
        ]},
    }
    explicit.load_model("ensemble_raises", config=json.dumps(config))  # any folder with a version dir
    try:
        start = time.monotonic()
        result = explicit.infer("ensemble_raises", [infer_input("IN", np.array([7], np.int32))],
                                parameters={"sleep_ms": 700})
        elapsed = time.monotonic() - start
        assert result.as_numpy("A")[0] == 7
        assert result.as_numpy("B")[0] in (b"slow_0_0", b"slow_0_1")
        assert 0.7 <= elapsed < 1.3
    finally:
        explicit.unload_model("ensemble_raises")
