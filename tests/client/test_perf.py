"""client.perf: perf_analyzer's measurement rules, request data, server statistics, and runs
against the in-process fake server in every mode."""

import base64
import csv
import json

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import serialize_byte_tensor

from backend import cli
from client import perf, perf_inputs, server_stats
from client.perf import Window

SHORT = ["-p", "100", "-r", "10", "-s", "50"]   # short windows, lenient stability: fast tests
# Such a smoke-size measurement may not settle on a shared machine: exit 3, figures still printed.
MEASURED = (0, cli.EXIT_UNSTABLE)


def window(count: int, seconds: float, latency_us: float) -> Window:
    return Window(int(seconds * 1e9), np.full(count, int(latency_us * 1e3), np.int64))


def test_stability_needs_three_agreeing_windows():
    steady = [window(100, 1, 1000), window(105, 1, 1020), window(98, 1, 990)]
    assert not perf.is_stable(steady[:2], 0.1)
    assert perf.is_stable(steady, 0.1)
    assert not perf.is_stable(steady[:2] + [window(80, 1, 1000)], 0.1), "throughput moved 31%"
    assert not perf.is_stable(steady[:2] + [window(100, 1, 1200)], 0.1), "latency moved 21%"
    assert perf.is_stable([window(50, 1, 1000)] + steady, 0.1), "only the last three count"
    assert not perf.is_stable([window(0, 1, 0)] * 3, 0.1)


def test_merged_windows_and_percentiles():
    merged = perf.merge_windows([window(10, 1, 1000), window(30, 2, 3000)])
    assert merged.count == 40 and merged.throughput == pytest.approx(40 / 3)
    assert merged.avg_latency_us == pytest.approx(2500)
    lat = Window(10**9, np.arange(1, 101, dtype=np.int64) * 1000)
    # perf_analyzer: sorted[int(p/100 * (n-1) + 0.5)] -> p50 of 1..100 is the 51st value.
    assert lat.percentile_us(50) == 51 and lat.percentile_us(99) == 99


def test_concurrency_range():
    assert perf.parse_range("3") == [3]
    assert perf.parse_range("1:4") == [1, 2, 3, 4]
    assert perf.parse_range("2:8:3") == [2, 5, 8]
    for bad in ("0", "4:2", "1:2:0", "a", "1:2:3:4"):
        with pytest.raises(ValueError):
            perf.parse_range(bad)


def test_input_specs_from_metadata():
    metadata = {"inputs": [{"name": "input", "datatype": "FP32", "shape": ["-1", "3", "-1", "-1"]}]}
    with pytest.raises(ValueError, match="--shape input:N,3,N,N"):
        perf_inputs.tensor_specs(metadata, {}, {})
    shapes = perf_inputs.parse_shape_args(["input:1,3,512,512"])
    (spec,) = perf_inputs.tensor_specs(metadata, {}, shapes)
    assert spec.shape == (1, 3, 512, 512) and spec.byte_size == 3 * 512 * 512 * 4
    with pytest.raises(ValueError, match="does not fit"):
        perf_inputs.tensor_specs(metadata, {}, {"input": (1, 4, 512, 512)})
    # With batching the metadata's first dim is the batch dim; --shape leaves it out.
    batched = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": ["-1", "-1"]}]}
    (spec,) = perf_inputs.tensor_specs(batched, {"max_batch_size": 8}, {"INPUT0": (16,)})
    assert spec.shape == (1, 16) and spec.batched
    with pytest.raises(ValueError):
        perf_inputs.parse_shape_args(["input=1,2"])


def test_request_data_sources(tmp_path, mini_set):
    image = perf_inputs.TensorSpec("IMAGE", "BYTES", (1,))
    numbers = perf_inputs.TensorSpec("X", "INT32", (2, 3))
    samples = perf_inputs.load_samples([image, numbers], None)
    assert len(samples) == 4, "one request per mini-set image"
    assert samples[0]["IMAGE"][0] == mini_set.path(785).read_bytes()
    assert samples[0]["X"].dtype == np.int32 and samples[0]["X"].shape == (2, 3)
    assert not perf_inputs.load_samples([numbers], "zero")[0]["X"].any()

    (tmp_path / "X").write_bytes(np.arange(6, dtype=np.int32).tobytes())
    (tmp_path / "a.png").write_bytes(b"png bytes")
    from_dir = perf_inputs.load_samples([image, numbers], str(tmp_path))
    assert from_dir[0]["IMAGE"][0] == b"png bytes"
    np.testing.assert_array_equal(from_dir[0]["X"], np.arange(6).reshape(2, 3))

    exported = perf_inputs.to_perf_analyzer_json([image, numbers], samples[:2])
    path = tmp_path / "data.json"
    path.write_text(json.dumps(exported))
    again = perf_inputs.load_samples([image, numbers], str(path))
    assert len(again) == 2 and again[1]["IMAGE"][0] == samples[1]["IMAGE"][0]
    np.testing.assert_array_equal(again[0]["X"], samples[0]["X"])
    # perf_analyzer's b64 STRING content carries the 4-byte lengths.
    raw = serialize_byte_tensor(np.array([b"abc"], np.object_)).item()
    entry = perf_inputs.json_tensor(image, {"b64": base64.b64encode(raw).decode()})
    assert entry.tolist() == [b"abc"]
    plain = perf_inputs.json_tensor(numbers, [1, 2, 3, 4, 5, 6])
    assert plain.shape == (2, 3)
    with pytest.raises(ValueError, match="6 elements"):
        perf_inputs.json_tensor(perf_inputs.TensorSpec("X", "INT32", (4,)), [1, 2, 3, 4, 5, 6])


def stats(name, version, queue_count, success_ns, infer_ns):
    s = pb.ModelStatistics(name=name, version=version, inference_count=queue_count,
                           execution_count=queue_count)
    s.inference_stats.success.count = s.inference_stats.queue.count = queue_count
    for part in ("compute_input", "compute_infer", "compute_output"):
        getattr(s.inference_stats, part).count = queue_count
    s.inference_stats.success.ns = success_ns
    s.inference_stats.compute_infer.ns = infer_ns
    return s


def test_server_statistics_deltas():
    before = {("m", "1"): stats("m", "1", 10, 10_000_000, 5_000_000),
              ("m", "2"): stats("m", "2", 3, 0, 0)}
    after = {("m", "1"): stats("m", "1", 30, 50_000_000, 25_000_000),
             ("m", "2"): stats("m", "2", 3, 0, 0)}
    times = server_stats.model_delta("m", before, after)
    assert times.version == "1", "the version whose queue count grew"
    assert times.success_count == 20 and times.avg_us("success") == 2000
    assert times.avg_us("compute_infer") == 1000
    merged = server_stats.merge([{"m": times}, {"m": times}])
    assert merged["m"].success_count == 40 and merged["m"].avg_us("success") == 2000
    lines = server_stats.format_breakdown("m", {"m": times}, {})
    assert "Avg request latency: 2000 usec (overhead 1000 usec" in lines[-1]


def run_perf(args, capsys):
    code = perf.main(args)
    return code, capsys.readouterr()


@pytest.mark.parametrize("mode", [[], ["--async"], ["--streaming"],
                                  ["--shared-memory", "system"],
                                  ["--async", "--shared-memory", "system"]])
def test_identity_in_every_mode(fake_server, tmp_path, capsys, mode):
    report = tmp_path / "perf.csv"
    code, printed = run_perf(["-m", "identity", "-u", fake_server.url, "--shape", "INPUT0:16",
                              "--concurrency-range", "1:2", "-f", str(report), *SHORT, *mode],
                             capsys)
    assert code in MEASURED, printed.err
    rows = list(csv.reader(report.open()))
    assert rows[0] == perf.CSV_HEADER
    assert sorted(int(r[0]) for r in rows[1:]) == [1, 2]
    assert all(float(r[1]) > 0 for r in rows[1:])
    assert "Concurrency: 2, throughput:" in printed.out
    assert "compute infer" in printed.out, "server-side breakdown"
    # The client's and the server's request counts describe the same windows.
    client = [int(line.split(":")[1]) for line in printed.out.splitlines()
              if line.strip().startswith("Request count:")]
    server = [int(line.split(":")[1]) for line in printed.out.splitlines()
              if line.strip().startswith("Successful request count:")]
    assert all(abs(c - s) <= 2 + 0.05 * c for c, s in zip(client, server))


def test_ensemble_breakdown_per_step(fake_server, capsys):
    code, printed = run_perf(["-m", "hrnet_pose", "-u", fake_server.url, *SHORT], capsys)
    assert code in MEASURED, printed.err
    assert "Composing models:" in printed.out
    for step in ("preprocess", "hrnet_om", "grouping"):
        assert f"{step}, version: 1" in printed.out
    assert "IMAGE BYTES [1] (4 data sample(s))" in printed.out


def test_export_for_perf_analyzer(fake_server, tmp_path, capsys, mini_set):
    path = tmp_path / "images.json"
    code, _ = run_perf(["-m", "hrnet_pose", "-u", fake_server.url,
                        "--export-input-data", str(path)], capsys)
    assert code == 0
    entries = json.loads(path.read_text())["data"]
    assert len(entries) == 4 and entries[0]["IMAGE"]["shape"] == [1]
    raw = base64.b64decode(entries[0]["IMAGE"]["content"]["b64"])
    assert raw[4:] == mini_set.path(785).read_bytes()


def test_failures_are_reported(fake_server, truth_answers, capsys, free_url):
    code, printed = run_perf(["-m", "identity", "-u", fake_server.url], capsys)
    assert code == 1 and "--shape INPUT0:N" in printed.err
    fake_server.triton.reject.update(truth_answers)
    code, printed = run_perf(["-m", "hrnet_pose", "-u", fake_server.url, *SHORT], capsys)
    assert code == 1 and "unable to decode" in printed.err
    with pytest.raises(SystemExit) as exit_info:
        perf.main(["-m", "identity", "-u", free_url])
    assert exit_info.value.code == 2 and free_url in capsys.readouterr().err

