"""Faults: a model that raises or hangs past the execution timeout fails only its own requests;
a client that cancels or whose deadline passes frees its slot (and a queued request it leaves is
never run); a model that fails to load or is unloaded with requests in flight; the concurrency
limit; SIGTERM finishes the requests in flight and exits 0 within the grace period."""

import signal
import threading
import time

import grpc
import numpy as np
import pytest

from proto import grpc_service_pb2 as pb
from tests.conftest import subset_repo
from tests.serverproc import start_server

from .conftest import escaped_exceptions
from .samples import check_serves
from .wire import OK, Client, output, request

C = grpc.StatusCode
FAULT_MODELS = ("identity", "raises", "ensemble_raises", "rel_hang", "fail_load")
EXECUTION_TIMEOUT = 1.0
MAX_INFLIGHT = 4


@pytest.fixture(scope="module")
def fault_repo(test_repo, tmp_path_factory):
    return str(subset_repo(test_repo, tmp_path_factory.mktemp("faults") / "models", *FAULT_MODELS))


@pytest.fixture(scope="module")
def fault_server(fault_repo):
    with start_server(fault_repo, "--model-control-mode", "explicit", "--load-model", "*",
                      "--model-execution-timeout", EXECUTION_TIMEOUT,
                      "--max-inflight-requests", MAX_INFLIGHT) as s:
        yield s


@pytest.fixture
def client(fault_server):
    with Client(fault_server.url) as c:
        yield c


def hang(ms: int, id="hang") -> pb.ModelInferRequest:
    return request("rel_hang", {"INPUT0": np.array([7], np.int32)}, id=id, params={"sleep_ms": ms})


def executions(client) -> int:
    code, details, resp = client.infer(hang(0))
    assert code == OK, details
    return int(output(resp, "EXECUTIONS")[0])


def wait_until_free(client, timeout=10):
    """Until rel_hang's one instance answers at once again."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if client.infer(hang(0), timeout=0.5)[0] == OK:
            return
    raise TimeoutError("rel_hang stayed busy")


def test_raising_model_fails_only_its_own_requests(client):
    calls = {
        "raise": request("raises", {"INPUT0": np.array([1, 666], np.int32)}),
        "error": request("raises", {"INPUT0": np.array([777], np.int32)}),
        "ensemble": request("ensemble_raises", {"IN": np.array([666], np.int32)}),
        "good": request("raises", {"INPUT0": np.array([1, 2], np.int32)}),
    }
    futures = {k: client.stub.ModelInfer.future(m, timeout=30) for k, m in calls.items()}
    results = {}
    for k, f in futures.items():
        try:
            results[k] = (OK, f.result())
        except grpc.RpcError as e:
            results[k] = (e.code(), e.details())
    assert results["raise"][0] == C.INTERNAL
    assert ("Failed to process the request(s) for model 'raises_0_0', message: ValueError: marker 666"
            in results["raise"][1])
    assert results["error"] == (C.INVALID_ARGUMENT, "marker 777 is not a valid input")
    assert results["ensemble"][0] == C.INTERNAL
    assert results["ensemble"][1].startswith("in ensemble 'ensemble_raises', step 0 (model 'raises'): ")
    assert results["good"][0] == OK and output(results["good"][1], "OUTPUT0").tolist() == [1, 2]
    check_serves(client, "raises")
    check_serves(client, "identity")


def test_hung_model_times_out_and_others_keep_serving(client):
    before = executions(client)
    future = client.stub.ModelInfer.future(hang(int(EXECUTION_TIMEOUT * 2500)), timeout=30)
    time.sleep(0.2)
    t0 = time.monotonic()
    check_serves(client, "identity")  # not behind the hung model (which takes 2.5 x the timeout)
    assert time.monotonic() - t0 < EXECUTION_TIMEOUT * 2
    with pytest.raises(grpc.RpcError) as err:
        future.result()
    assert err.value.code() == C.UNAVAILABLE
    assert err.value.details() == (f"model 'rel_hang' instance 'rel_hang_0_0' did not finish within "
                                   f"{EXECUTION_TIMEOUT:g} s (execution timeout)")
    elapsed = time.monotonic() - t0
    assert elapsed < EXECUTION_TIMEOUT * 2, "the timeout fired late"
    wait_until_free(client)  # the instance is back once its thread returns
    assert executions(client) >= before + 2


@pytest.mark.parametrize("how", ["deadline", "cancel"])
def test_client_that_gives_up_frees_its_slot(client, how):
    """MAX_INFLIGHT requests whose client gives up: the server's slots are free again at once,
    and the requests still queued behind the executing one never run."""
    before = executions(client)
    sleep_ms = int(EXECUTION_TIMEOUT * 700)
    deadline = 0.3 if how == "deadline" else 30
    futures = [client.stub.ModelInfer.future(hang(sleep_ms, id=f"gone-{i}"), timeout=deadline)
               for i in range(MAX_INFLIGHT)]
    time.sleep(0.3 if how == "cancel" else 0.0)
    if how == "cancel":
        for f in futures:
            f.cancel()
    for f in futures:
        with pytest.raises((grpc.RpcError, grpc.FutureCancelledError)) as err:
            f.result()
        if how == "deadline":
            assert err.value.code() == C.DEADLINE_EXCEEDED
    time.sleep(0.1)
    # All MAX_INFLIGHT slots were taken; now they are free (else: "at its limit").
    for _ in range(MAX_INFLIGHT):
        check_serves(client, "identity")
    time.sleep(sleep_ms / 1000)  # the executing one finishes; the instance is free
    # The executing request ran (before + 1), then this one: the queued ones were never run.
    assert executions(client) == before + 2


def test_concurrency_limit(client):
    futures = [client.stub.ModelInfer.future(hang(400, id=f"busy-{i}"), timeout=30) for i in range(MAX_INFLIGHT)]
    time.sleep(0.2)
    code, details, _ = client.infer(request("identity", {"INPUT0": np.zeros((1, 2), np.float32)}))
    assert (code, details) == (C.UNAVAILABLE, f"Server is at its limit of {MAX_INFLIGHT} concurrent requests")
    assert [f.result().id for f in futures] == [f"busy-{i}" for i in range(MAX_INFLIGHT)]
    check_serves(client, "identity")


def test_model_that_fails_to_load(client):
    index = client.call("RepositoryIndex", pb.RepositoryIndexRequest())[2]
    state = {m.name: (m.state, m.reason) for m in index.models}
    assert state["fail_load"] == ("UNAVAILABLE", "TritonModelException: fail_load refuses to initialize")
    code, details, _ = client.infer(request("fail_load", {"INPUT0": np.zeros(1, np.float32)}))
    assert code == C.UNAVAILABLE and "'fail_load' has no available versions" in details
    code, details, _ = client.call("RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="fail_load"))
    assert code == C.UNAVAILABLE
    assert details == "failed to load 'fail_load': TritonModelException: fail_load refuses to initialize"
    assert client.call("ModelReady", pb.ModelReadyRequest(name="fail_load"))[2].ready is False
    check_serves(client, "identity")


def test_unload_waits_for_requests_in_flight(client):
    wait_until_free(client)
    inflight = client.stub.ModelInfer.future(hang(800, id="inflight"), timeout=30)
    time.sleep(0.2)
    unloaded = {}

    def unload():
        unloaded["result"] = client.call("RepositoryModelUnload",
                                         pb.RepositoryModelUnloadRequest(model_name="rel_hang"))[:2]
        unloaded["at"] = time.monotonic()
    t = threading.Thread(target=unload)
    t.start()
    time.sleep(0.2)
    # Unloading: new requests are refused, the one in flight completes.
    code, details, _ = client.infer(hang(0, id="late"))
    assert code == C.NOT_FOUND and "'rel_hang' has no available versions" in details
    resp = inflight.result()
    done_at = time.monotonic()
    assert resp.id == "inflight" and output(resp, "OUTPUT0").tolist() == [7]
    t.join(10)
    assert unloaded["result"] == (OK, "")
    assert unloaded["at"] >= done_at - 0.05  # the unload returned after the request finished
    assert client.call("RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="rel_hang"))[0] == OK
    check_serves(client, "rel_hang")


def test_no_exception_escaped(fault_server, client):
    """After the faults above, the log holds no exception the server did not map to a status."""
    assert client.live()
    assert escaped_exceptions(fault_server.log) == []


def _sigterm_server(repo, grace):
    return start_server(repo, "--exit-timeout-secs", grace)


def test_sigterm_finishes_requests_in_flight(fault_repo):
    """SIGTERM with requests executing and queued: none is lost, new ones are refused
    (UNAVAILABLE), the server exits 0 within the grace period."""
    grace = 10
    s = _sigterm_server(fault_repo, grace)
    with Client(s.url) as c:
        check_serves(c, "rel_hang")
        futures = [c.stub.ModelInfer.future(hang(500, id=f"drain-{i}"), timeout=30) for i in range(4)]
        time.sleep(0.3)
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        code, details, _ = c.infer(request("identity", {"INPUT0": np.zeros((1, 2), np.float32)}))
        assert code == C.UNAVAILABLE, details
        for i, f in enumerate(futures):
            resp = f.result()
            assert resp.id == f"drain-{i}" and output(resp, "OUTPUT0").tolist() == [7]
        assert s.proc.wait(grace) == 0
        assert time.monotonic() - t0 < grace
    s.stop()
    assert escaped_exceptions(s.log) == []
    assert "Stopped" in s.log


def test_sigterm_grace_period_bounds_exit(fault_repo):
    """A request that outlives the grace period is cut off; the server still exits in time."""
    grace = 2
    s = _sigterm_server(fault_repo, grace)
    with Client(s.url) as c:
        check_serves(c, "identity")
        future = c.stub.ModelInfer.future(hang(30000, id="endless"), timeout=60)
        time.sleep(0.3)
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        code = s.proc.wait(grace + 5)
        took = time.monotonic() - t0
        with pytest.raises(grpc.RpcError) as err:
            future.result()
        assert err.value.code() in (C.UNAVAILABLE, C.CANCELLED)
    s.stop()
    assert code == 0 and took < grace + 3, (code, took, s.log[-2000:])
