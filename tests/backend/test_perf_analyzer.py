"""NVIDIA's perf_analyzer 2.50 (prepared by ../shared/tools/perf_analyzer.sh) against the
server: identity and ensemble_add, each in four modes over gRPC (sync, --async, --streaming,
--shared-memory=system) and three over HTTP (-i http: sync, --async, shared memory), must end with
exit 0 and report a throughput. Skipped, saying why,
where the tool cannot be prepared (exit 3) or ../shared is absent."""

import os
import re
import subprocess

import pytest

from tests.serverproc import ROOT

TOOL = os.path.join(os.path.dirname(ROOT), "shared", "tools", "perf_analyzer.sh")
MODES = {"sync": [], "async": ["--async"], "streaming": ["--streaming"],
         "shm": ["--shared-memory=system"]}
MODELS = {"identity": ["--shape", "INPUT0:16"], "ensemble_add": []}
# A fixed request count instead of time windows: perf_analyzer's stability search
# ("Failed to obtain stable measurement") is unreliable on a busy 2-core machine.
MEASURE = ["--request-count", "200", "--concurrency-range", "2"]


@pytest.fixture(scope="module")
def perf_analyzer():
    if not os.path.isfile(TOOL):
        pytest.skip(f"{TOOL} is absent (no ../shared next to this checkout)")
    setup = subprocess.run(["bash", TOOL, "--setup-only"], capture_output=True, text=True, timeout=300)
    if setup.returncode == 3:
        pytest.skip(f"perf_analyzer could not be prepared here: {setup.stderr.strip()[-300:]}")
    assert setup.returncode == 0, setup.stderr
    return TOOL


CASES = [("grpc", mode) for mode in sorted(MODES)] + [("http", mode) for mode in ("async", "shm", "sync")]


@pytest.mark.parametrize("protocol, mode", CASES)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_perf_analyzer(perf_analyzer, server, model, protocol, mode):
    url = server.url if protocol == "grpc" else server.http_url
    cmd = ["bash", perf_analyzer, "-m", model, "-u", url, "-i", protocol,
           *MEASURE, *MODELS[model], *MODES[mode]]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    report = f"$ {' '.join(cmd)}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0, report
    assert re.search(r"Throughput: [0-9.]+ infer/sec", run.stdout), report
    assert "error" not in run.stderr.lower(), report
    if model == "ensemble_add":
        # Statistics of every composing model were found (queue.count grew for each).
        assert "Composing models:" in run.stdout and "add_onnx, version: 1" in run.stdout, report
        assert "identity, version: 1" in run.stdout, report
