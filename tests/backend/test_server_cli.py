"""`python -m backend.server` as a process: tritonserver's flags, port 0, what the log says,
--exit-on-error, explicit mode with --load-model, clean stops on SIGTERM and SIGINT."""

import queue
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from backend import server as server_main
from tests.backend.rpc_helpers import infer_input
from tests.serverproc import ROOT, start_server


def test_defaults_are_tritonservers():
    args = server_main.parse_args(["--model-repository", "repo"])
    assert (args.grpc_port, args.http_port, args.metrics_port) == (8001, 8000, 8002)
    assert args.host == "0.0.0.0"
    assert args.model_control_mode == "none" and args.load_model == []
    assert not args.exit_on_error and args.log_verbose == 0
    assert args.allow_http and args.allow_metrics and args.allow_grpc


def test_model_repository_is_required():
    proc = subprocess.run([sys.executable, "-m", "backend.server"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1, "backend.cli: a usage error exits 1"
    assert proc.stderr.count("\n") == 1, "one line"
    assert "--model-repository" in proc.stderr and "required" in proc.stderr


def test_the_log_says_what_loaded_and_what_failed(server):
    log = server.log
    assert re.search(r"Started GRPCInferenceService at 127\.0\.0\.1:(\d+)", log)
    assert f":{server.port}" in log and server.port > 0
    for name in ("identity", "add_sub", "add_onnx", "ensemble_add", "echo_bytes"):
        # Once each, even for the steps an ensemble loaded first.
        assert log.count(f"successfully loaded '{name}' version 1") == 1, name
    assert re.search(r"model 'fail_load' failed to load: .*fail_load refuses to initialize", log)


def test_port_zero_binds_free_ports(test_repo):
    with start_server(test_repo, "--model-control-mode", "explicit") as a, \
            start_server(test_repo, "--model-control-mode", "explicit") as b:
        assert a.port != b.port
        for s in (a, b):
            assert grpcclient.InferenceServerClient(s.url).is_server_live()


def test_tritonserver_flags_are_accepted(test_repo):
    with start_server(test_repo, "--model-control-mode", "explicit", "--load-model", "identity",
                      "--http-port", "0", "--metrics-port", "0", "--allow-http", "true",
                      "--allow-metrics", "false", "--log-verbose", "1") as s:
        client = grpcclient.InferenceServerClient(s.url)
        assert client.is_server_ready() and client.is_model_ready("identity")
        assert s.http_port and "Started HTTPService" in s.log
        assert s.metrics_port is None and "Started Metrics Service" not in s.log


def test_load_model_star_loads_everything(test_repo):
    with start_server(test_repo, "--model-control-mode", "explicit", "--load-model", "*") as s:
        client = grpcclient.InferenceServerClient(s.url)
        index = {m.name: m.state for m in client.get_model_repository_index().models}
        assert index["fail_load"] == "UNAVAILABLE"
        assert all(state == "READY" for name, state in index.items() if name != "fail_load")


def test_exit_on_error(test_repo):
    proc = subprocess.run([sys.executable, "-m", "backend.server", "--model-repository", test_repo,
                           "--grpc-port", "0", "--host", "127.0.0.1", "--exit-on-error"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "fail_load refuses to initialize" in proc.stderr
    assert "--exit-on-error" in proc.stderr
    assert "Started GRPCInferenceService" not in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_after_requests_in_flight(test_repo, sig):
    s = start_server(test_repo, "--model-control-mode", "explicit", "--load-model", "slow")
    try:
        client = grpcclient.InferenceServerClient(s.url)
        done = queue.Queue()
        client.async_infer("slow", [infer_input("INPUT0", np.array([9], np.int32))],
                           parameters={"sleep_ms": 700}, callback=lambda result, error: done.put((result, error)))
        time.sleep(0.3)
        start = time.monotonic()
        rc = s.stop(sig)
        result, error = done.get(timeout=30)
    finally:
        s.stop()
    assert error is None, error.message()
    assert result.as_numpy("OUTPUT0")[0] == 9
    assert rc == 0
    assert time.monotonic() - start < 20
    assert "Stopped" in s.log
    assert "Traceback" not in s.log
