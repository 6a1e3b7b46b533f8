"""client.perf as a newcomer meets it: a slow model reaches a stable measurement with the default
rules, an unstable one exits 3, the CSV ends in a newline, shared-memory output regions are
sized from what the model returns (real server processes)."""

import re

import pytest

from backend import cli
from client import perf
from tests.serverproc import start_server

SLEEP_S = 0.26
SLEEPY_CONFIG = """name: "sleepy"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
SLEEPY_MODEL = f"""import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep({SLEEP_S} * len(requests))
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]
"""


@pytest.fixture(scope="module")
def sleepy_server(tmp_path_factory):
    """A model of a fixed 0.26 s per request: W32 `hrnet_pose` (~1.3 s here) scaled down by 5, as
    the test's 1 s interval is the default 5 s one scaled down by 5."""
    repo = tmp_path_factory.mktemp("sleepy")
    (repo / "sleepy" / "1").mkdir(parents=True)
    (repo / "sleepy" / "config.pbtxt").write_text(SLEEPY_CONFIG)
    (repo / "sleepy" / "1" / "model.py").write_text(SLEEPY_MODEL)
    with start_server(repo) as s:
        yield s


def test_slow_model_is_stable_with_the_default_rules(sleepy_server, tmp_path, capsys):
    """Default stability (10 %) and trials (10), windows of ~4.6 requests (as hrnet_pose in the
    default 5 s interval): fixed time windows count 4 or 5 (25 % apart) and never settled (the
    README's example ran 2 minutes, NOT STABLE); windows that end with a request settle."""
    report = tmp_path / "perf.csv"
    code = perf.main(["-m", "sleepy", "-u", sleepy_server.url, "-p", "1000", "-f", str(report)])
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK, out
    assert "NOT STABLE" not in out
    throughput = float(out.split("Throughput: ")[1].split()[0])
    assert throughput == pytest.approx(1 / SLEEP_S, rel=0.1)
    text = report.read_bytes()
    assert text.endswith(b"\n") and b"\r" not in text, "perf_analyzer's CSV: rows end in \\n"
    assert text.decode().splitlines()[0].split(",") == perf.CSV_HEADER


def test_no_stable_measurement_exits_3(sleepy_server, capsys):
    """0 % stability needs three windows of exactly equal throughput and latency: never."""
    code = perf.main(["-m", "sleepy", "-u", sleepy_server.url, "-p", "300", "-s", "0",
                      "-r", "3"])
    printed = capsys.readouterr()
    assert code == cli.EXIT_UNSTABLE == 3
    assert "Request concurrency: 1  (NOT STABLE)" in printed.out
    assert printed.err.splitlines()[-1].startswith("error: no stable measurement at concurrency 1")
    assert "3 no stable measurement" in perf_help(capsys), "--help promises exit 3"


def perf_help(capsys) -> str:
    with pytest.raises(SystemExit):
        perf.main(["--help"])
    return " ".join(capsys.readouterr().out.split())


def test_shared_memory_outputs_sized_from_the_answers(pose_server, capsys):
    """`preprocess` returns megabytes (the old fixed 100 KiB region failed every request)."""
    code = perf.main(["-m", "preprocess", "-u", pose_server.url, "--shared-memory", "system",
                      "-p", "300", "-r", "4", "-s", "50"])
    printed = capsys.readouterr()
    assert code in (cli.EXIT_OK, cli.EXIT_UNSTABLE), printed.err
    regions = printed.out.split("Output regions: ")[1].splitlines()[0]
    assert "(from the largest answer to 4 data sample(s))" in regions
    size = int(re.search(r"\bINPUT (\d+) bytes", regions).group(1))
    assert size >= 3 * 512 * 512 * 4, regions      # at least one normalised 512x512 RGB float


def test_output_region_size_override(pose_server, capsys):
    code = perf.main(["-m", "preprocess", "-u", pose_server.url, "--shared-memory", "system",
                      "--output-shared-memory-size", "1024", "-p", "300", "-r", "3"])
    printed = capsys.readouterr()
    assert code == cli.EXIT_FAILED
    assert "1024 bytes (from --output-shared-memory-size)" in printed.out
    error = printed.err.strip().splitlines()[-1]
    assert error.startswith("error: requests to 'preprocess'") and "--output-shared-memory-size" in error
