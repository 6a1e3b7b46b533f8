"""The transport table of `make bench` (bench/transport.py), without timing anything: our server on
the bench's repository echoes a 3 MiB FP32 tensor bit for bit over gRPC and HTTP; the echo check
catches a server whose output is not its input (PyTriton's empty-output trap); perf_analyzer's
report is read into the figures the table prints. Slow: PyTriton (../shared/tools/peers_env.sh),
started the way the bench starts it, answers the same echo and stops with its whole process group
(skipped until its venv has been prepared, e.g. by `make bench-transport`).
Speed itself is measured by `make bench-transport`, not here."""

import glob
import os

import pytest

from bench import transport

# perf_analyzer 2.50's report of one stable measurement (PyTriton, gRPC, concurrency 1), as printed.
PA_STDOUT = """\
Request concurrency: 1
  Client: 
    Request count: 100
    Throughput: 24.8529 infer/sec
    Avg latency: 33511 usec (standard deviation 25940 usec)
    p50 latency: 28660 usec
    p90 latency: 48232 usec
    p95 latency: 68752 usec
    p99 latency: 120460 usec
    Avg gRPC time: 27015 usec ((un)marshal request/response 1182 usec + response wait 25833 usec)
  Server: 
    Inference count: 100
    Execution count: 100
    Successful request count: 100
    Avg request latency: 16004 usec (overhead 9 usec + queue 573 usec + compute input 324 usec + compute infer 9264 usec + compute output 5834 usec)

Inferences/Second vs. Client Average Batch Latency
Concurrency: 1, throughput: 24.8529 infer/sec, latency 33511 usec
"""

ZEROS_MODEL = '''
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", np.zeros_like(pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()))])
            for r in requests]
'''


def test_parse_reads_client_and_server_figures():
    assert transport.parse(PA_STDOUT) == {
        "infer_per_s": 24.8529, "avg_us": 33511, "p50_us": 28660, "p99_us": 120460, "server_us": 16004,
        "server_overhead_us": 9, "server_queue_us": 573, "server_input_us": 324, "server_infer_us": 9264,
        "server_output_us": 5834}


def test_our_server_echoes_3_mib(tmp_path):
    with transport.our_server(str(tmp_path), "3,512,512", 8) as server:
        transport.check_echo("ours", server, "3,512,512")
        assert server["alive"]()


def test_echo_check_catches_wrong_output(tmp_path, monkeypatch):
    model_py = tmp_path / "zeros.py"
    model_py.write_text(ZEROS_MODEL)
    monkeypatch.setattr(transport, "MODEL_PY", str(model_py))
    with transport.our_server(str(tmp_path), "3,8,8", 8) as server:
        with pytest.raises(RuntimeError, match="ours over grpc: OUTPUT0 is not INPUT0"):
            transport.check_echo("ours", server, "3,8,8")


@pytest.mark.slow
def test_pytriton_peer_echoes_and_stops(tmp_path):
    if not os.path.isfile(transport.PEERS_ENV):
        pytest.skip(f"{transport.PEERS_ENV} is absent (no ../shared next to this checkout)")
    # Preparing PyTriton's venv takes minutes and the network: left to make bench-transport.
    ready = os.path.join(os.environ.get("PEERS_HOME", os.path.expanduser("~/.cache/peer-servers")), "pytriton", ".ready")
    if not os.path.isfile(ready):
        pytest.skip(f"PyTriton's venv is not prepared ({ready} absent; make bench-transport prepares it)")
    try:
        python, libdir = transport.pytriton_env()
    except transport.Skip as e:
        pytest.skip(str(e))
    with transport.pytriton_server(str(tmp_path), python, libdir, "3,512,512", 8) as server:
        transport.check_echo("pytriton", server, "3,512,512")
        assert server["alive"]()
        group = server["pgid"]
    assert not server["alive"]()
    assert _live_in_group(group) == []  # tritonserver and its Python stub are gone too


def _live_in_group(pgid: int) -> list[int]:
    """Processes of the group that are not zombies (those wait for PID 1 to reap them)."""
    live = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.split("/")[2]))
    return live


def test_report_pairs_rounds_and_divides_medians():
    def r(ips):
        return {"infer_per_s": ips, "p50_us": 1000.0}
    results = {("ours", "grpc", 1): [r(80), r(60), r(90)], ("pytriton", "grpc", 1): [r(40), None, r(100)],
               ("ours", "http", 1): [r(40), r(40), r(50)], ("pytriton", "http", 1): [r(40), r(20), r(50)]}
    rows = transport.report(results, ["ours", "pytriton"], [("grpc", 1), ("http", 1)], None).splitlines()
    # gRPC: rounds 1 and 3 pair up (80/40, 90/100); HTTP ÷ gRPC: medians 40/80 (ours), 40/70 (PyTriton)
    assert rows[2] == "| grpc | 1 | 80.0 | 1.00 | 70.0 | 1.00 | 1.45 (0.90–2.00) |  |"
    assert rows[3] == "| http | 1 | 40.0 | 1.00 | 40.0 | 1.00 | 1.00 (1.00–2.00) | 0.50 / 0.57 |"
