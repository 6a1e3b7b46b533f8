"""The server's command line as a newcomer meets it: mistakes found before any model loads, each
one line on stderr and exit 1 (backend/cli.py); --load-model outside explicit mode warns; poll
mode follows the repository; shutdown within --exit-timeout-secs; --log-verbose 1 shows the
server's own work. Real server processes throughout."""

import queue
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.backend.rpc_helpers import infer_input
from tests.conftest import subset_repo
from tests.serverproc import ROOT, start_server


def run_server(*args, timeout=60) -> subprocess.CompletedProcess:
    """A server that must refuse to start: its exit code and output."""
    return subprocess.run([sys.executable, "-m", "backend.server", "--host", "127.0.0.1",
                           "--http-port", "0", "--metrics-port", "0", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, *phrases):
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    # Found before loading: no model was touched (the repository has models that log loads).
    assert "loaded" not in proc.stderr and "Started" not in proc.stderr


@pytest.fixture(scope="module")
def small_repo(test_repo, tmp_path_factory):
    return subset_repo(test_repo, tmp_path_factory.mktemp("startup") / "models", "identity",
                       "rel_hang")


def test_repository_missing_or_a_file(tmp_path, small_repo):
    proc = run_server("--model-repository", tmp_path / "nowhere")
    assert_one_line_error(proc, f"--model-repository {tmp_path / 'nowhere'}: no such folder")
    proc = run_server("--model-repository", small_repo / "identity" / "config.pbtxt")
    assert_one_line_error(proc, "is a file")


def test_grpc_port_out_of_range(small_repo):
    proc = run_server("--model-repository", small_repo, "--grpc-port", "99999")
    assert_one_line_error(proc, "--grpc-port", "99999 is not a port")


def test_port_in_use_found_before_models_load(small_repo):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_server("--model-repository", small_repo, "--grpc-port", port)
        assert_one_line_error(proc, f"--grpc-port {port}: the port is already in use")
        proc = run_server("--model-repository", small_repo, "--grpc-port", "0",
                          "--metrics-port", port)
        assert_one_line_error(proc, f"--metrics-port {port}: the port is already in use")


def test_tls_files_checked_before_models_load(small_repo, certs, tmp_path):
    tls = ["--model-repository", small_repo, "--grpc-port", "0", "--grpc-use-ssl"]
    proc = run_server(*tls, "--grpc-server-cert", certs["server_crt"],
                      "--grpc-server-key", certs["client_key"])
    assert_one_line_error(proc, "are not a pair")
    missing = tmp_path / "no.key"
    proc = run_server(*tls, "--grpc-server-cert", certs["server_crt"], "--grpc-server-key", missing)
    assert_one_line_error(proc, f"--grpc-server-key {missing}: no such file")
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    proc = run_server(*tls, "--grpc-server-cert", garbage, "--grpc-server-key", certs["server_key"])
    assert_one_line_error(proc, "cannot be read as PEM")
    proc = run_server("--model-repository", small_repo, "--grpc-port", "0",
                      "--grpc-use-ssl-mutual", "--grpc-server-cert", certs["server_crt"],
                      "--grpc-server-key", certs["server_key"])
    assert_one_line_error(proc, "--grpc-use-ssl-mutual needs --grpc-root-cert")


def test_load_model_outside_explicit_mode_warns(small_repo):
    with start_server(small_repo, "--load-model", "identity") as s:
        assert "--load-model identity ignored: it applies only with --model-control-mode explicit" in s.log
        client = grpcclient.InferenceServerClient(s.url)
        assert client.is_model_ready("identity") and client.is_model_ready("rel_hang"), \
            "mode none loads every model"


def wait_for(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def ready(client, name) -> bool:
    try:
        return client.is_model_ready(name)
    except InferenceServerException:
        return False


def test_poll_mode_follows_the_repository(test_repo, tmp_path):
    """Triton's poll mode: a new model folder is loaded, a changed one reloaded, a removed one
    unloaded; load/unload requests are refused."""
    repo = subset_repo(test_repo, tmp_path / "models", "identity")
    with start_server(repo, "--model-control-mode", "poll", "--repository-poll-secs", "0.2") as s:
        client = grpcclient.InferenceServerClient(s.url)
        assert ready(client, "identity")
        shutil.copytree(f"{test_repo}/add_sub", repo / "add_sub")
        assert wait_for(lambda: ready(client, "add_sub")), s.log
        loads = s.log.count("successfully loaded 'identity'")
        config = repo / "identity" / "config.pbtxt"
        config.write_text(config.read_text() + "\n# changed\n")
        assert wait_for(lambda: s.log.count("successfully loaded 'identity'") == loads + 1), s.log
        shutil.rmtree(repo / "add_sub")
        assert wait_for(lambda: not ready(client, "add_sub")), s.log
        assert ready(client, "identity")
        with pytest.raises(InferenceServerException, match="not allowed if polling is enabled"):
            client.load_model("identity")


def test_shutdown_within_exit_timeout_secs(small_repo):
    """A request that never ends: the server exits S seconds after SIGTERM, not S + 1."""
    grace = 1.5
    s = start_server(small_repo, "--exit-timeout-secs", grace)
    try:
        client = grpcclient.InferenceServerClient(s.url)
        done = queue.Queue()
        client.async_infer("rel_hang", [infer_input("INPUT0", np.array([1], np.int32))],
                           parameters={"sleep_ms": 30000},
                           callback=lambda result, error: done.put(error))
        time.sleep(0.3)
        start = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        code = s.proc.wait(grace + 10)
        took = time.monotonic() - start
    finally:
        s.stop()
    assert code == 0
    # The old bound waited one more second past the grace period: S + 1 would fail here.
    assert grace - 0.1 <= took < grace + 0.8, (took, s.log[-1500:])


def test_log_verbose_shows_the_servers_own_work(small_repo):
    with start_server(small_repo, "--log-verbose", "1") as s:
        client = grpcclient.InferenceServerClient(s.url)
        client.infer("identity", [infer_input("INPUT0", np.zeros((1, 4), np.float32))])
        assert wait_for(lambda: "backend.scheduler]" in s.log, 5)
    debug = [line for line in s.log.splitlines() if " D " in line]
    assert debug, s.log
    assert all(" D backend." in line for line in debug), "no library noise at level 1"
    log = s.log
    assert "D backend.repository] loading 'identity'" in log        # model loads
    assert "D backend.core] request" in log and "'identity'" in log  # request routing
    assert "D backend.scheduler] 'identity' instance" in log         # batch size and time
    assert "batch size 1" in log and " ms" in log
