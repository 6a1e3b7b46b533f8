"""ModelStatistics over real RPCs: Triton's fields grow as requests run, failures are counted,
and an ensemble's internal requests count in its composing models (perf_analyzer relies on it)."""

import time

import numpy as np

from tests.backend.rpc_helpers import expect_error, infer_input


def _stats(client, name, version=""):
    models = client.get_inference_statistics(name, version).model_stats
    assert len(models) == 1
    return models[0]


def _counts(s):
    i = s.inference_stats
    return {"inference": s.inference_count, "execution": s.execution_count, "success": i.success.count,
            "fail": i.fail.count, "queue": i.queue.count, "compute_input": i.compute_input.count,
            "compute_infer": i.compute_infer.count, "compute_output": i.compute_output.count}


def _delta(after, before):
    a, b = _counts(after), _counts(before)
    return {k: a[k] - b[k] for k in a}


def test_counts_and_durations_grow(triton_client):
    x = np.array([[1, 2]], np.int32)
    before = _stats(triton_client, "alt_config")
    start_ms = time.time() * 1000
    for _ in range(3):
        triton_client.infer("alt_config", [infer_input("INPUT0", x[0])])
    after = _stats(triton_client, "alt_config")
    assert (after.name, after.version) == ("alt_config", "1")
    assert _delta(after, before) == {"inference": 3, "execution": 3, "success": 3, "fail": 0, "queue": 3,
                                     "compute_input": 3, "compute_infer": 3, "compute_output": 3}
    i, j = after.inference_stats, before.inference_stats
    assert i.success.ns > j.success.ns and i.compute_infer.ns > j.compute_infer.ns
    assert i.queue.ns >= j.queue.ns
    assert after.last_inference >= start_ms - 1000


def test_failures_are_counted(triton_client):
    before = _stats(triton_client, "raises")
    with expect_error("INTERNAL", "marker 666"):
        triton_client.infer("raises", [infer_input("INPUT0", np.array([666], np.int32))])
    triton_client.infer("raises", [infer_input("INPUT0", np.array([1], np.int32))])
    d = _delta(_stats(triton_client, "raises"), before)
    assert (d["fail"], d["success"]) == (1, 1)


def test_batch_stats(triton_client):
    def batch3(s):
        return next((b.compute_infer.count for b in s.batch_stats if b.batch_size == 3), 0)
    before = _stats(triton_client, "echo_bytes")
    triton_client.infer("echo_bytes", [infer_input("INPUT0", np.array([[b"a"]] * 3, np.object_))])
    after = _stats(triton_client, "echo_bytes")
    assert batch3(after) == batch3(before) + 1
    assert after.inference_count - before.inference_count == 3  # items, not requests
    assert after.execution_count - before.execution_count == 1


def test_ensemble_counts_in_itself_and_every_step(triton_client):
    names = ["ensemble_add", "add_onnx", "identity"]
    before = {n: _stats(triton_client, n) for n in names}
    a = np.ones((2, 4), np.float32)
    for _ in range(4):
        triton_client.infer("ensemble_add", [infer_input("INPUT0", a), infer_input("INPUT1", a)])
    after = {n: _stats(triton_client, n) for n in names}
    for n in names:
        d = _delta(after[n], before[n])
        assert d["queue"] == 4 and d["success"] == 4, (n, d)
        assert d["inference"] == 8, (n, d)  # 4 requests of batch 2
    ens = after["ensemble_add"]
    assert any(b.batch_size == 2 for b in ens.batch_stats)
    # Its compute times are the sum of its steps' (it has no compute of its own).
    assert ens.inference_stats.compute_infer.ns >= after["add_onnx"].inference_stats.compute_infer.ns \
        - before["add_onnx"].inference_stats.compute_infer.ns


def test_bls_calls_count_in_the_called_model(triton_client):
    before = _stats(triton_client, "add_sub")
    a = np.ones(4, np.float32)
    triton_client.infer("bls_add", [infer_input("INPUT0", a), infer_input("INPUT1", a)])
    assert _delta(_stats(triton_client, "add_sub"), before)["success"] == 1


def test_all_models_with_numeric_versions(triton_client):
    stats = triton_client.get_inference_statistics().model_stats
    pairs = {(s.name, s.version) for s in stats}
    assert {("identity", "1"), ("ensemble_add", "1"), ("versioned", "1"), ("versioned", "3")} <= pairs
    assert all(s.version.isdigit() for s in stats)
    assert "fail_load" not in {s.name for s in stats}  # no loaded version, nothing to report


def test_stats_of_one_version(triton_client):
    x = np.array([1], np.int32)
    before = _stats(triton_client, "versioned", "1")
    triton_client.infer("versioned", [infer_input("INPUT0", x)], model_version="1")
    assert _delta(_stats(triton_client, "versioned", "1"), before)["success"] == 1


def test_statistics_errors(triton_client):
    with expect_error("INVALID_ARGUMENT", "requested model 'no_such_model' is not available"):
        triton_client.get_inference_statistics("no_such_model")
    with expect_error("NOT_FOUND", "'versioned' version 2 is not found"):
        triton_client.get_inference_statistics("versioned", "2")
