"""pb_utils custom metrics on the metrics endpoint (python_backend README "Custom Metrics"): a
counter, a gauge and a histogram made by a model with labels appear with Triton's names and types
(a counter without `_total`), two instances share the series of the same labels, and the series
leave the endpoint when the model is unloaded. Real server, tests/models/custom_metrics."""

import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.backend.rpc_helpers import infer_input
from tests.conftest import subset_repo
from tests.serverproc import start_server

LABELS = 'model="custom_metrics",version="1"'


def scrape(url) -> list:
    return urllib.request.urlopen(url, timeout=10).read().decode().splitlines()


def value(lines, sample) -> float:
    found = [ln for ln in lines if ln.rsplit(" ", 1)[0] == sample]
    assert len(found) == 1, (sample, [ln for ln in lines if ln.startswith(sample.split("{")[0])])
    return float(found[0].rsplit(" ", 1)[1])


@pytest.fixture(scope="module")
def metrics_server(test_repo, tmp_path_factory):
    repo = subset_repo(test_repo, tmp_path_factory.mktemp("custom_metrics"), "custom_metrics")
    with start_server(repo, "--model-control-mode", "explicit", "--load-model", "custom_metrics") as s:
        yield s


def test_counter_gauge_and_histogram_with_their_labels(metrics_server):
    client = grpcclient.InferenceServerClient(metrics_server.url)
    for x in (0.5, 5.0, 50.0):
        client.infer("custom_metrics", [infer_input("INPUT0", np.array([x], np.float32))])
    lines = scrape(metrics_server.metrics_url)
    assert "# HELP custom_requests_n Requests seen by the model" in lines
    assert "# TYPE custom_requests_n counter" in lines
    assert value(lines, 'custom_requests_n{kind="requests",' + LABELS + '}') == 3
    assert "# TYPE custom_last_value gauge" in lines
    assert value(lines, "custom_last_value{" + LABELS + "}") == 50.0
    assert "# TYPE custom_value_hist histogram" in lines
    for le, count in (("1.0", 1), ("10.0", 2), ("100.0", 3), ("+Inf", 3)):
        assert value(lines, "custom_value_hist_bucket{" + f'le="{le}",' + LABELS + "}") == count
    assert value(lines, "custom_value_hist_count{" + LABELS + "}") == 3
    assert value(lines, "custom_value_hist_sum{" + LABELS + "}") == 55.5
    # Triton's own families are still there, beside them
    assert value(lines, 'nv_inference_request_success{' + LABELS + '}') == 3


def test_series_leave_the_endpoint_with_the_model(metrics_server):
    client = grpcclient.InferenceServerClient(metrics_server.url)
    client.unload_model("custom_metrics")
    lines = scrape(metrics_server.metrics_url)
    assert not [ln for ln in lines if ln.startswith("custom_")]
    client.load_model("custom_metrics")  # fresh series: the model made new Metric objects
    client.infer("custom_metrics", [infer_input("INPUT0", np.array([2.0], np.float32))])
    lines = scrape(metrics_server.metrics_url)
    assert value(lines, 'custom_requests_n{kind="requests",' + LABELS + '}') == 1
