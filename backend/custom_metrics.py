"""Custom metrics of Python models (pb_utils.MetricFamily / Metric), kept as Triton's core keeps
them: one registry for the server process; a family by name (the same name and kind is the same
family; another kind is refused); its series by label set, shared by every Metric object with
those labels and removed when the last of them is gone (a family when its last MetricFamily
object is). The metrics endpoint exports them at each scrape (`collect`). Error messages are
Triton's (core metric_family.cc); pb_utils adds its prefixes."""

import math
import re
import threading

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")   # Prometheus' metric and label name rules
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_KIND_NAME = {COUNTER: "TRITONSERVER_METRIC_KIND_COUNTER", GAUGE: "TRITONSERVER_METRIC_KIND_GAUGE",
              HISTOGRAM: "TRITONSERVER_METRIC_KIND_HISTOGRAM"}


class Series:
    """One labelled series of a family: a value (counter, gauge) or bucket counts (histogram)."""

    def __init__(self, kind: str, buckets):
        self.kind = kind
        self.lock = threading.Lock()
        self.refs = 0
        self.value = 0.0
        self.buckets = tuple(sorted(float(b) for b in buckets)) if buckets is not None else ()
        self.bucket_counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def _refuse(self, what: str):
        raise ValueError(f"{_KIND_NAME[self.kind]} does not support {what}")

    def increment(self, value: float):
        if self.kind == HISTOGRAM:
            self._refuse("Increment")
        if self.kind == COUNTER and value < 0:
            raise ValueError("TRITONSERVER_METRIC_KIND_COUNTER can only be incremented monotonically "
                             "by non-negative values.")
        with self.lock:
            self.value += value

    def set(self, value: float):
        if self.kind != GAUGE:
            self._refuse("Set")
        with self.lock:
            self.value = float(value)

    def observe(self, value: float):
        if self.kind != HISTOGRAM:
            self._refuse("Observe")
        with self.lock:
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self.bucket_counts[i] += 1
            self.sum += value
            self.count += 1

    def get(self) -> float:
        if self.kind == HISTOGRAM:
            self._refuse("Value")
        with self.lock:
            return self.value


class Family:
    def __init__(self, name: str, description: str, kind: str):
        self.name, self.description, self.kind = name, description, kind
        self.refs = 0
        self.series = {}  # sorted label items -> Series


class Registry:
    def __init__(self):
        self._lock = threading.Lock()
        self._families = {}

    def family(self, name: str, description: str, kind: str) -> Family:
        """The family called `name` (created, or the existing one: its first description stays)."""
        if not _NAME.match(name):
            raise ValueError(f"Invalid metric name: '{name}'")
        with self._lock:
            family = self._families.get(name)
            if family is None:
                family = self._families[name] = Family(name, description, kind)
            elif family.kind != kind:
                raise ValueError(f"Metric family '{name}' is already registered with kind "
                                 f"{_KIND_NAME[family.kind]}, not {_KIND_NAME[kind]}")
            family.refs += 1
            return family

    def release_family(self, family: Family):
        with self._lock:
            family.refs -= 1
            if family.refs <= 0 and self._families.get(family.name) is family:
                del self._families[family.name]

    def series(self, family: Family, labels: dict, buckets) -> tuple:
        """(key, Series) for `labels` in `family`; the same labels share one series."""
        for k, v in labels.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"Parameter [{k}] must have a type of TRITONSERVER_PARAMETER_STRING "
                                 f"to be added as a label.")
            if not _LABEL.match(k) or k.startswith("__"):
                raise ValueError(f"Invalid label name: '{k}'")
        if buckets is not None and any(math.isnan(float(b)) for b in buckets):
            raise ValueError("Bucket boundaries must be numbers")
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = family.series.get(key)
            if series is None:
                series = family.series[key] = Series(family.kind, buckets)
            series.refs += 1
            return key, series

    def release_series(self, family: Family, key: tuple):
        with self._lock:
            series = family.series.get(key)
            if series is not None:
                series.refs -= 1
                if series.refs <= 0:
                    del family.series[key]

    def counter_names(self) -> list:
        with self._lock:
            return [f.name for f in self._families.values() if f.kind == COUNTER]

    def collect(self):
        """prometheus_client families of every series (counters named without `_total`, as
        Triton's prometheus-cpp names them: the metrics endpoint fixes their HELP/TYPE lines)."""
        from prometheus_client.core import GaugeMetricFamily, Metric
        with self._lock:
            families = [(f, list(f.series.items())) for f in self._families.values() if f.series]
        for family, series in families:
            out = GaugeMetricFamily(family.name, family.description) if family.kind == GAUGE \
                else Metric(family.name, family.description, family.kind)
            for key, s in series:
                labels = dict(key)
                with s.lock:
                    if family.kind != HISTOGRAM:
                        out.add_sample(family.name, labels, s.value)
                        continue
                    for bound, count in zip(s.buckets, s.bucket_counts):
                        out.add_sample(family.name + "_bucket", {**labels, "le": repr(bound)}, count)
                    out.add_sample(family.name + "_bucket", {**labels, "le": "+Inf"}, s.count)
                    out.add_sample(family.name + "_count", labels, s.count)
                    out.add_sample(family.name + "_sum", labels, s.sum)
            yield out


REGISTRY = Registry()
