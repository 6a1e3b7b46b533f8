"""`python -m deploy.cluster`: two real server replicas behind a real nginx, on loopback ports.

The launcher runs as a subprocess, as a user starts it; requests go through the front with
tritonclient, and each replica's own statistics show where they went. Skipped, with the reason,
where nginx is not installed (`make test` installs it with `make install-cluster` when it can).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from deploy import cluster
from tests.conftest import copy_test_repo, subset_repo
from tests.serverproc import ROOT, stop_process

class Launcher:
    """`python -m deploy.cluster` on free loopback ports; `state` once it says it is ready."""

    def __init__(self, repo, tmp_path, *extra, replicas=2, exit_timeout=10):
        self.state_path = tmp_path / "cluster.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cluster", "--replicas", str(replicas),
             "--model-repository", str(repo), "--grpc-port", "0", "--http-port", "0",
             "--state", str(self.state_path), "--exit-timeout-secs", str(exit_timeout), *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out, self.err = [], []
        self._pumps = [threading.Thread(target=self._pump, args=(s, lines), daemon=True)
                       for s, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._pumps:
            t.start()
        end = time.monotonic() + 180
        while not self.state_path.exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError("the cluster did not start:\n" + "".join(self.err))
            time.sleep(0.1)
        self.state = json.loads(self.state_path.read_text())

    @staticmethod
    def _pump(stream, lines):
        for line in stream:
            lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.err)

    def stop(self, sig=signal.SIGTERM, timeout=60) -> int:
        code = stop_process(self.proc, sig, timeout)
        for t in self._pumps:
            t.join(5)
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def slow_request(i: int, sleep_ms: int = 0):
    x = grpcclient.InferInput("INPUT0", [1], "INT32")
    x.set_data_from_numpy(np.array([i], np.int32))
    return [x], {"sleep_ms": sleep_ms}


def infer_slow(client, i, sleep_ms=0):
    inputs, params = slow_request(i, sleep_ms)
    result = client.infer("slow", inputs, parameters=params)
    assert result.as_numpy("OUTPUT0").tolist() == [i]


def infer_slow_http(client, i, sleep_ms=0):
    x = httpclient.InferInput("INPUT0", [1], "INT32")
    x.set_data_from_numpy(np.array([i], np.int32))
    result = client.infer("slow", [x], parameters={"sleep_ms": sleep_ms})
    assert result.as_numpy("OUTPUT0").tolist() == [i]


def successes(address: str, model: str = "slow") -> int:
    with grpcclient.InferenceServerClient(address) as c:
        stats = c.get_inference_statistics(model)
    return sum(s.inference_stats.success.count for s in stats.model_stats)


@pytest.fixture(scope="module")
def slow_repo(tmp_path_factory):
    """`slow` (sleeps sleep_ms, 2 instances) and `identity` (any length) of tests/models."""
    if cluster.find_nginx() is None:
        pytest.skip("nginx is not installed and `make install-cluster` could not install it here")
    base = tmp_path_factory.mktemp("cluster_repo")
    return subset_repo(copy_test_repo(base / "all"), base / "repo", "slow", "identity")


@pytest.fixture(scope="module")
def running(slow_repo, tmp_path_factory):
    with Launcher(slow_repo, tmp_path_factory.mktemp("cluster")) as launcher:
        yield launcher


def test_state_file_and_one_line_per_process(running):
    state = running.state
    assert len(state["replicas"]) == 2
    assert set(state["replicas"][0]) == {"pid", "grpc", "http", "metrics"}
    pids = [r["pid"] for r in state["replicas"]] + [state["nginx_pid"]]
    assert all(pid_alive(p) for p in pids)
    lines = "".join(running.out).splitlines()
    assert len(lines) == 3
    for r in state["replicas"]:
        assert sum(f"pid {r['pid']}, grpc {r['grpc']}," in line for line in lines) == 1
    assert sum(line.startswith(f"nginx: pid {state['nginx_pid']}, grpc {state['grpc']},")
               for line in lines) == 1


def test_grpc_requests_are_spread_over_both_replicas(running):
    replicas = [r["grpc"] for r in running.state["replicas"]]
    before = [successes(a) for a in replicas]
    with grpcclient.InferenceServerClient(running.state["grpc"]) as front:
        assert front.is_server_ready() and front.is_model_ready("slow")
        for i in range(20):   # one connection: nginx balances each call, not the connection
            infer_slow(front, i)
    grown = [successes(a) - b for a, b in zip(replicas, before)]
    assert sum(grown) == 20
    assert min(grown) >= 5, grown


def test_12mb_messages_pass_both_ways(running):
    data = np.random.default_rng(0).standard_normal((1, 3_200_000)).astype(np.float32)  # 12.8 MB
    x = grpcclient.InferInput("INPUT0", list(data.shape), "FP32")
    x.set_data_from_numpy(data)
    with grpcclient.InferenceServerClient(running.state["grpc"]) as front:
        result = front.infer("identity", [x])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_http_through_the_front(running):
    replicas = [r["grpc"] for r in running.state["replicas"]]
    before = [successes(a) for a in replicas]
    front = httpclient.InferenceServerClient(running.state["http"])
    try:
        assert front.is_server_live() and front.is_server_ready()
        for i in range(10):
            infer_slow_http(front, i)
        data = np.random.default_rng(1).standard_normal((1, 3_200_000)).astype(np.float32)
        x = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
        x.set_data_from_numpy(data)   # binary: a 12.8 MB body, and as much back
        np.testing.assert_array_equal(front.infer("identity", [x]).as_numpy("OUTPUT0"), data)
    finally:
        front.close()
    grown = [successes(a) - b for a, b in zip(replicas, before)]
    assert sum(grown) == 10 and min(grown) >= 2, grown


def test_client_perf_accepts_the_front_url(running, capsys):
    from backend import cli
    from client import perf
    replicas = [r["grpc"] for r in running.state["replicas"]]
    before = [successes(a) for a in replicas]
    code = perf.main(["-m", "slow", "-u", running.state["grpc"], "-p", "500", "-s", "50",
                      "-r", "4"])
    # Measured either way; a sub-millisecond model on a busy machine may not settle (exit 3).
    assert code in (cli.EXIT_OK, cli.EXIT_UNSTABLE)
    assert "Concurrency: 1, throughput:" in capsys.readouterr().out
    assert all(successes(a) > b for a, b in zip(replicas, before))


class Load:
    """Client threads (gRPC and HTTP), each with its own connection to the front, sending `slow`
    requests of `sleep_ms` back to back; every request's (start, end, error or None) is kept."""

    def __init__(self, state, grpc_clients=2, http_clients=2, sleep_ms=100):
        self.records, self.stop = [], threading.Event()
        clients = ([(grpcclient.InferenceServerClient, state["grpc"], infer_slow)] * grpc_clients
                   + [(httpclient.InferenceServerClient, state["http"], infer_slow_http)]
                   * http_clients)
        self.threads = [threading.Thread(target=self._run, args=(*c, k, sleep_ms), daemon=True)
                        for k, c in enumerate(clients)]
        for t in self.threads:
            t.start()

    def _run(self, make, url, infer, k, sleep_ms):
        client = make(url)
        i = 0
        while not self.stop.is_set():
            start, error = time.monotonic(), None
            try:
                infer(client, k * 100000 + i, sleep_ms)
            except Exception as err:   # recorded: the test says which failures are allowed
                error = err
            self.records.append((start, time.monotonic(), error))
            i += 1
        client.close()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        return self.records


def test_sigkill_of_a_replica_under_load_then_sigterm_stops_everything(slow_repo, tmp_path):
    with Launcher(slow_repo, tmp_path) as launcher:
        state = launcher.state
        victim, survivor = state["replicas"]
        load = Load(state, grpc_clients=2, http_clients=2, sleep_ms=100)
        time.sleep(1.5)
        os.kill(victim["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        time.sleep(2.5)
        records = load.finish()

        failed = [(s, e, err) for s, e, err in records if err is not None]
        # At most the requests in flight on the victim fail: each started before the kill and
        # ended after it (4 clients: at most 4).
        assert len(failed) <= 4, failed
        assert all(s < killed_at <= e for s, e, _ in failed), failed
        after = [err for s, _, err in records if s > killed_at]
        assert len(after) >= 10 and all(err is None for err in after), after
        assert len([r for r in records if r[0] < killed_at]) >= 10

        end = time.monotonic() + 10
        while "killed by SIGKILL" not in launcher.log and time.monotonic() < end:
            time.sleep(0.1)
        assert f"replica 0 (pid {victim['pid']}, grpc {victim['grpc']}) exited (killed by SIGKILL)" \
            in launcher.log
        assert not listening(victim["grpc"])   # not restarted without --restart

        # SIGTERM while a request is in flight: it finishes, then everything stops.
        result = {}

        def long_request():
            with grpcclient.InferenceServerClient(state["grpc"]) as c:
                try:
                    infer_slow(c, 7, sleep_ms=1500)
                    result["ok"] = True
                except Exception as err:
                    result["error"] = err
        t = threading.Thread(target=long_request)
        t.start()
        time.sleep(0.5)
        assert launcher.stop(signal.SIGTERM) == 0, launcher.log
        t.join(10)
        assert result == {"ok": True}, result
    addresses = [state["grpc"], state["http"]] + [r[k] for r in state["replicas"]
                                                  for k in ("grpc", "http", "metrics")]
    assert not [a for a in addresses if listening(a)]
    assert not [p for p in [survivor["pid"], state["nginx_pid"]] if pid_alive(p)]
    assert not launcher.state_path.exists()
    assert "stopped" in launcher.log


def test_restart_brings_a_dead_replica_back_on_its_ports(slow_repo, tmp_path):
    with Launcher(slow_repo, tmp_path, "--restart") as launcher:
        victim = launcher.state["replicas"][1]
        os.kill(victim["pid"], signal.SIGKILL)
        end = time.monotonic() + 120
        while len(launcher.out) < 4 and time.monotonic() < end:
            time.sleep(0.1)
        again = json.loads(launcher.state_path.read_text())["replicas"][1]
        assert again["grpc"] == victim["grpc"] and again["pid"] != victim["pid"]
        assert launcher.out[-1].startswith(f"replica 1: pid {again['pid']}, grpc {victim['grpc']},")
        # nginx sends requests to it again (after its passive health check's fail_timeout).
        with grpcclient.InferenceServerClient(launcher.state["grpc"]) as front:
            end = time.monotonic() + 30
            while successes(victim["grpc"]) == 0 and time.monotonic() < end:
                infer_slow(front, 1)
                time.sleep(0.05)
        assert successes(victim["grpc"]) > 0
        state = json.loads(launcher.state_path.read_text())
        assert launcher.stop(signal.SIGINT) == 0   # Ctrl-C stops it as SIGTERM does
    assert not [a for r in state["replicas"] for a in (r["grpc"], r["http"]) if listening(a)]
    assert not listening(state["grpc"])


def test_children_stop_when_the_launcher_is_killed(slow_repo, tmp_path):
    with Launcher(slow_repo, tmp_path, replicas=1) as launcher:
        pids = [launcher.state["nginx_pid"], launcher.state["replicas"][0]["pid"]]
        launcher.stop(signal.SIGKILL)
        end = time.monotonic() + 30
        while any(pid_alive(p) for p in pids) and time.monotonic() < end:
            time.sleep(0.1)
        left = [p for p in pids if pid_alive(p)]
        for pid in left:   # each leads its own process group (nginx's workers are in it)
            os.killpg(pid, signal.SIGKILL)
        assert not left
        assert not listening(launcher.state["grpc"])


def test_missing_nginx_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cluster, "find_nginx", lambda: None)
    assert cluster.main(["--model-repository", str(tmp_path), "--state",
                         str(tmp_path / "c.json")]) == 1
    assert "make install-cluster" in capsys.readouterr().err
