"""The Prometheus endpoint of a real server process after known traffic: Triton's families and
labels, failure reasons, ensemble steps as their own models, durations that grow, values equal to
ModelStatistics, and the host's CPU and memory."""

import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.conftest import subset_repo
from tests.serverproc import start_server

FAMILIES = ["nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
            "nv_inference_exec_count", "nv_inference_pending_request_count", "nv_inference_request_duration_us",
            "nv_inference_queue_duration_us", "nv_inference_compute_input_duration_us",
            "nv_inference_compute_infer_duration_us", "nv_inference_compute_output_duration_us",
            "nv_cpu_utilization", "nv_cpu_memory_total_bytes", "nv_cpu_memory_used_bytes"]


def scrape(server) -> tuple:
    """(text, {(family, frozenset(labels)): value})."""
    text = urllib.request.urlopen(server.metrics_url, timeout=30).read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # (the parser names counter samples <family>_total; the text has Triton's names)
            name = family.name if family.type == "counter" else sample.name
            values[(name, frozenset(sample.labels.items()))] = sample.value
    return text, values


def value(values, name, model=None, **labels):
    key = dict(labels, **({"model": model, "version": "1"} if model else {}))
    return values[(name, frozenset(key.items()))]


@pytest.fixture(scope="module")
def metrics_server(test_repo, tmp_path_factory):
    repo = subset_repo(test_repo, tmp_path_factory.mktemp("metrics") / "repo",
                       "identity", "raises", "batch_delay", "ensemble_add", "add_onnx")
    with start_server(repo) as s:
        yield s


def test_families_and_values_after_known_traffic(metrics_server):
    s = metrics_server
    grpc = grpcclient.InferenceServerClient(s.url)
    http = httpclient.InferenceServerClient(s.http_url)
    x = np.ones((1, 4), np.float32)
    for client, mod, n in ((grpc, grpcclient, 3), (http, httpclient, 2)):
        for _ in range(n):
            inp = mod.InferInput("INPUT0", [1, 4], "FP32")
            inp.set_data_from_numpy(x)
            client.infer("identity", [inp])
    # failures: a validation error (OTHER), an execution that raises (BACKEND), a queue timeout (REJECTED)
    bad = grpcclient.InferInput("INPUT0", [1, 4], "FP64")
    bad.set_data_from_numpy(x.astype(np.float64))
    with pytest.raises(InferenceServerException):
        grpc.infer("identity", [bad])
    boom = grpcclient.InferInput("INPUT0", [1], "INT32")
    boom.set_data_from_numpy(np.array([666], np.int32))
    with pytest.raises(InferenceServerException):
        grpc.infer("raises", [boom])
    late = grpcclient.InferInput("INPUT0", [1, 1], "FP32")
    late.set_data_from_numpy(np.ones((1, 1), np.float32))
    with pytest.raises(InferenceServerException, match="Request timeout expired"):
        grpc.infer("batch_delay", [late], timeout=1000)  # 1 ms in a queue that waits 300 ms
    ens = [grpcclient.InferInput(n, [1, 4], "FP32") for n in ("INPUT0", "INPUT1")]
    for t in ens:
        t.set_data_from_numpy(x)
    grpc.infer("ensemble_add", ens)

    text, values = scrape(s)
    for family in FAMILIES:
        assert f"# TYPE {family} " in text, family
    assert "_total " not in text and "_total{" not in text  # Triton's counter names (no suffix)
    assert value(values, "nv_inference_request_success", "identity") == 6  # 5 direct + 1 ensemble step
    assert value(values, "nv_inference_count", "identity") == 6
    assert 1 <= value(values, "nv_inference_exec_count", "identity") <= 6
    assert value(values, "nv_inference_request_failure", "identity", reason="OTHER") == 1
    assert value(values, "nv_inference_request_failure", "raises", reason="BACKEND") == 1
    assert value(values, "nv_inference_request_failure", "batch_delay", reason="REJECTED") == 1
    assert value(values, "nv_inference_request_success", "ensemble_add") == 1
    assert value(values, "nv_inference_request_success", "add_onnx") == 1  # a step counts as its own model
    for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
        assert value(values, "nv_inference_request_failure", "add_onnx", reason=reason) == 0
    assert value(values, "nv_inference_pending_request_count", "identity") == 0
    total = value(values, "nv_cpu_memory_total_bytes")
    assert 0 < value(values, "nv_cpu_memory_used_bytes") < total
    assert 0.0 <= value(values, "nv_cpu_utilization") <= 1.0

    # the same counters as ModelStatistics
    stats = http.get_inference_statistics("identity")["model_stats"][0]
    inf = stats["inference_stats"]
    assert value(values, "nv_inference_exec_count", "identity") == stats["execution_count"]
    assert value(values, "nv_inference_request_duration_us", "identity") == \
        (inf["success"]["ns"] + inf["fail"]["ns"]) // 1000
    for field in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert value(values, f"nv_inference_{field}_duration_us", "identity") == inf[field]["ns"] // 1000

    # durations grow with traffic
    inp = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
    inp.set_data_from_numpy(x)
    before = value(values, "nv_inference_compute_infer_duration_us", "identity")
    grpc.infer("identity", [inp])
    _, after = scrape(s)
    assert value(after, "nv_inference_request_success", "identity") == 7
    assert value(after, "nv_inference_request_duration_us", "identity") > \
        value(values, "nv_inference_request_duration_us", "identity")
    assert value(after, "nv_inference_compute_infer_duration_us", "identity") >= before


def test_unknown_path_is_404(metrics_server):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(metrics_server.metrics_url.replace("/metrics", "/nope"), timeout=30)
    assert e.value.code == 404


def test_grafana_dashboard_queries_only_exported_metrics(metrics_server):
    """deploy/grafana's dashboard: valid JSON, and every metric its panels query is on the endpoint."""
    import json
    import pathlib
    import re
    path = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "hrnet-triton-dashboard.json"
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 7 and dashboard["templating"]["list"][0]["name"] == "model"
    used = {name for e in exprs for name in re.findall(r"\b(nv_[a-z_]+)", e)}
    text, _ = scrape(metrics_server)
    exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert used and used <= exported, used - exported
    # the operator's three questions: request rate, queue/compute split per model, failures
    assert {"nv_inference_request_success", "nv_inference_queue_duration_us",
            "nv_inference_compute_infer_duration_us", "nv_inference_request_failure"} <= used
