"""Prometheus metrics (Triton's families and labels) on their own port: read from the same
counters as ModelStatistics at each scrape, so the two always agree."""

import logging

import psutil
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from . import custom_metrics
from .core import InferenceCore

log = logging.getLogger("backend.metrics")

FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
# Cumulative durations: (family suffix, ModelStatistics field, help)
_DURATIONS = (
    ("request_duration_us", "success", "Cumulative inference request duration in microseconds (includes cached requests)"),
    ("queue_duration_us", "queue", "Cumulative inference queuing duration in microseconds (includes cached requests)"),
    ("compute_input_duration_us", "compute_input", "Cumulative compute input duration in microseconds"),
    ("compute_infer_duration_us", "compute_infer", "Cumulative compute inference duration in microseconds"),
    ("compute_output_duration_us", "compute_output", "Cumulative inference compute output duration in microseconds"),
)


class TritonCounter(Metric):
    """A counter named as Triton names it: no `_total` suffix on its samples (prometheus_client's
    CounterMetricFamily adds one); `exposition` strips the one its writer adds to the headers."""

    def __init__(self, name, documentation, labels):
        super().__init__(name, documentation, "counter")
        self._labels = labels

    def add_metric(self, values, value):
        self.add_sample(self.name, dict(zip(self._labels, values)), value)


COUNTERS = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
            "nv_inference_exec_count") + tuple("nv_inference_" + d[0] for d in _DURATIONS)


def exposition(registry, counters) -> bytes:
    """Prometheus text of the registry with Triton's counter names in the HELP/TYPE lines."""
    text = generate_latest(registry)
    for name in counters:
        text = text.replace(f"# HELP {name}_total ".encode(), f"# HELP {name} ".encode()) \
                   .replace(f"# TYPE {name}_total counter".encode(), f"# TYPE {name} counter".encode())
    return text


class TritonCollector:
    """nv_inference_* per (model, version) and nv_cpu_* for the host."""

    def __init__(self, core: InferenceCore):
        self.core = core
        psutil.cpu_percent(None)  # the first call only starts the measurement

    def collect(self):
        labels = ["model", "version"]
        success = TritonCounter("nv_inference_request_success",
                                      "Number of successful inference requests, all batch sizes", labels=labels)
        failure = TritonCounter("nv_inference_request_failure",
                                      "Number of failed inference requests, all batch sizes",
                                      labels=labels + ["reason"])
        count = TritonCounter("nv_inference_count",
                                    "Number of inferences performed (does not include cached requests)", labels=labels)
        execs = TritonCounter("nv_inference_exec_count",
                                    "Number of model executions performed (does not include cached requests)",
                                    labels=labels)
        pending = GaugeMetricFamily("nv_inference_pending_request_count",
                                    "Instantaneous number of pending requests awaiting execution per-model.",
                                    labels=labels)
        durations = [TritonCounter("nv_inference_" + suffix, text, labels=labels)
                     for suffix, _, text in _DURATIONS]
        for model in self.core.loaded_models():
            key = [model.name, model.version_str]
            snap = model.stats.snapshot(model.name, model.version_str)
            stats = snap["inference_stats"]
            success.add_metric(key, stats["success"]["count"])
            reasons = model.stats.failures_by_reason()
            for reason in FAILURE_REASONS:
                failure.add_metric(key + [reason], reasons.get(reason, 0))
            count.add_metric(key, snap["inference_count"])
            execs.add_metric(key, snap["execution_count"])
            pending.add_metric(key, model.pending_requests())
            for family, (_, field, _) in zip(durations, _DURATIONS):
                ns = stats[field]["ns"]
                if field == "success":  # Triton's request duration counts failed requests too
                    ns += stats["fail"]["ns"]
                family.add_metric(key, ns // 1000)
        yield from (success, failure, count, execs, pending, *durations)
        memory = psutil.virtual_memory()
        yield GaugeMetricFamily("nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]",
                                value=psutil.cpu_percent(None) / 100.0)
        yield GaugeMetricFamily("nv_cpu_memory_total_bytes", "CPU total memory (RAM), in bytes", value=memory.total)
        yield GaugeMetricFamily("nv_cpu_memory_used_bytes", "CPU used memory (RAM), in bytes",
                                value=memory.total - memory.available)
        for family in self.extra_families():
            yield family

    def extra_families(self):
        """Families that models add (pb_utils custom metrics), if any."""
        return custom_metrics.REGISTRY.collect()


def metrics_app(core: InferenceCore) -> web.Application:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TritonCollector(core))

    async def metrics(request):
        body = exposition(registry, COUNTERS + tuple(custom_metrics.REGISTRY.counter_names()))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
