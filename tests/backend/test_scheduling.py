"""Scheduling over real RPCs: instance_group count gives concurrent executions, the dynamic
batcher gathers requests (preferred size, queue delay), the queue policy refuses requests
beyond max_queue_size and honours request timeouts; responses are never mixed."""

import queue
import time

import numpy as np
import pytest

from tests.backend.rpc_helpers import expect_error, infer_input


def _send(client, model, n, make_inputs, **kw):
    """n async requests at once; returns [(index, result, error, seconds)] in completion order."""
    done = queue.Queue()
    start = time.monotonic()
    for i in range(n):
        client.async_infer(model, make_inputs(i), request_id=str(i),
                           callback=lambda result, error, i=i: done.put((i, result, error, time.monotonic() - start)),
                           **kw)
    return [done.get(timeout=60) for _ in range(n)]


def _slow_input(i):
    return [infer_input("INPUT0", np.array([i], np.int32))]


def test_two_instances_run_two_requests_at_once(triton_client):
    answers = _send(triton_client, "slow", 2, _slow_input, parameters={"sleep_ms": 600})
    assert all(err is None for _, _, err, _ in answers)
    instances = {r.as_numpy("INSTANCE")[0] for _, r, _, _ in answers}
    assert instances == {b"slow_0_0", b"slow_0_1"}
    assert max(t for *_, t in answers) < 1.1  # in parallel (serial would be >= 1.2 s)


def test_a_third_request_waits_for_a_free_instance(triton_client):
    answers = _send(triton_client, "slow", 3, _slow_input, parameters={"sleep_ms": 400})
    assert all(err is None for _, _, err, _ in answers)
    for i, result, _, _ in answers:
        assert result.as_numpy("OUTPUT0")[0] == i
    assert max(t for *_, t in answers) >= 0.8


def _batch_input(i):
    return [infer_input("INPUT0", np.array([[i]], np.float32))]


def test_dynamic_batching_reaches_the_preferred_size(triton_client):
    # 8 requests arrive within the 300 ms queue delay: one execution of the preferred size 8.
    answers = _send(triton_client, "batch_delay", 8, _batch_input)
    for i, result, err, _ in answers:
        assert err is None, err.message()
        assert result.as_numpy("OUTPUT0")[0, 0] == i  # its own data back
        assert result.as_numpy("BATCH")[0, 0] == 8


def test_queue_delay_holds_a_lone_request(triton_client):
    start = time.monotonic()
    result = triton_client.infer("batch_delay", _batch_input(5))
    assert result.as_numpy("BATCH")[0, 0] == 1
    assert time.monotonic() - start >= 0.25  # waited for company up to max_queue_delay (300 ms)


def test_batches_of_requests_with_several_items(triton_client):
    sizes = [3, 2, 3]
    answers = _send(triton_client, "batch_delay", 3,
                    lambda i: [infer_input("INPUT0", np.full((sizes[i], 1), i, np.float32))])
    for i, result, err, _ in answers:
        assert err is None, err.message()
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((sizes[i], 1), i))
        assert (result.as_numpy("BATCH") == 8).all()


def test_queue_full_is_refused(triton_client):
    # The first request occupies the only instance for 1.5 s; 8 more fill the queue
    # (max_queue_size 8); the next ones are refused.
    done = queue.Queue()
    busy = [infer_input("INPUT0", np.array([[0]], np.float32))]
    triton_client.async_infer("batch_delay", busy, parameters={"sleep_ms": 1500},
                              callback=lambda result, error: done.put(error))
    time.sleep(0.6)  # past the 300 ms queue delay: it is executing
    for i in range(8):
        triton_client.async_infer("batch_delay", _batch_input(i + 1),
                                  callback=lambda result, error: done.put(error))
    time.sleep(0.2)
    for i in range(2):
        with expect_error("UNAVAILABLE", "Exceeds maximum queue size"):
            triton_client.infer("batch_delay", _batch_input(9))
    errors = [done.get(timeout=60) for _ in range(9)]
    assert errors == [None] * 9  # the queued ones are served


def test_request_timeout_in_the_queue(triton_client):
    done = queue.Queue()
    triton_client.async_infer("batch_delay", _batch_input(0), parameters={"sleep_ms": 1200},
                              callback=lambda result, error: done.put(error))
    time.sleep(0.5)
    with expect_error("UNAVAILABLE", "Request timeout expired"):
        triton_client.infer("batch_delay", _batch_input(1), timeout=100_000)  # microseconds
    assert done.get(timeout=60) is None


@pytest.mark.parametrize("model", ["identity", "add_onnx"])
def test_many_requests_none_lost_duplicated_or_mixed(triton_client, model):
    n = 100

    def make(i):
        x = np.full((1 + i % 4, 4), i, np.float32)
        return [infer_input("INPUT0", x)] + ([infer_input("INPUT1", x)] if model == "add_onnx" else [])
    answers = _send(triton_client, model, n, make)
    assert sorted(i for i, *_ in answers) == list(range(n))
    for i, result, err, _ in answers:
        assert err is None, err.message()
        assert result.get_response().id == str(i)
        expected = np.full((1 + i % 4, 4), i * (2 if model == "add_onnx" else 1), np.float32)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), expected)


def test_largest_preferred_batch_size_first(triton_client):
    """6 requests queue behind a busy instance; when it frees, the batcher sends a batch of the
    preferred size 4 (not all 6), then the remaining 2."""
    done = queue.Queue()
    triton_client.async_infer("batch_delay", _batch_input(0), parameters={"sleep_ms": 800},
                              callback=lambda result, error: done.put(error))
    time.sleep(0.5)
    answers = _send(triton_client, "batch_delay", 6, lambda i: _batch_input(i + 1))
    assert done.get(timeout=30) is None
    for i, result, err, _ in answers:
        assert err is None, err.message()
        assert result.as_numpy("OUTPUT0")[0, 0] == i + 1
    assert sorted(int(r.as_numpy("BATCH")[0, 0]) for _, r, _, _ in answers) == [2, 2, 4, 4, 4, 4]
