"""Per model-version inference statistics with Triton's fields (ModelStatistics; the metrics
endpoint reads the same counters). Snapshots are plain dicts in Triton's JSON layout, which both
protocols encode."""

import collections
import threading
import time

from .types import Timing


class _Duration:
    __slots__ = ("count", "ns")

    def __init__(self):
        self.count = 0
        self.ns = 0

    def add(self, ns: int, n: int = 1):
        self.count += n
        self.ns += ns

    def as_dict(self):
        return {"count": self.count, "ns": self.ns}


class ModelStats:
    def __init__(self):
        self._lock = threading.Lock()
        self.last_inference_ms = 0
        self.inference_count = 0
        self.execution_count = 0
        self.success = _Duration()
        self.fail = _Duration()
        self.queue = _Duration()
        self.compute_input = _Duration()
        self.compute_infer = _Duration()
        self.compute_output = _Duration()
        self.batches = {}  # batch size -> (input, infer, output) durations
        # failures by the metrics' reason label (REJECTED, CANCELED, BACKEND, OTHER)
        self.fail_reasons = collections.Counter()

    def request_done(self, ok: bool, total_ns: int, timing: Timing | None = None, reason: str = "OTHER"):
        """One request finished (success or failure), with its phase times."""
        with self._lock:
            self.last_inference_ms = int(time.time() * 1000)
            if not ok:
                self.fail.add(total_ns)
                self.fail_reasons[reason] += 1
                return
            self.success.add(total_ns)
            if timing is not None:
                self.queue.add(timing.queue_ns)
                self.compute_input.add(timing.compute_input_ns)
                self.compute_infer.add(timing.compute_infer_ns)
                self.compute_output.add(timing.compute_output_ns)

    def execution_done(self, batch_size: int, timing: Timing, executions: int = 1):
        """The model ran once on `batch_size` items (several requests if dynamically batched)."""
        with self._lock:
            self.inference_count += batch_size
            self.execution_count += executions
            b = self.batches.get(batch_size)
            if b is None:
                b = self.batches[batch_size] = (_Duration(), _Duration(), _Duration())
            b[0].add(timing.compute_input_ns)
            b[1].add(timing.compute_infer_ns)
            b[2].add(timing.compute_output_ns)

    def snapshot(self, name: str, version: str) -> dict:
        """ModelStatistics of this model version, in Triton's JSON layout."""
        with self._lock:
            return {
                "name": name, "version": version,
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {
                    "success": self.success.as_dict(), "fail": self.fail.as_dict(),
                    "queue": self.queue.as_dict(), "compute_input": self.compute_input.as_dict(),
                    "compute_infer": self.compute_infer.as_dict(),
                    "compute_output": self.compute_output.as_dict(),
                    "cache_hit": {"count": 0, "ns": 0}, "cache_miss": {"count": 0, "ns": 0},
                },
                "batch_stats": [{"batch_size": size, "compute_input": b[0].as_dict(),
                                 "compute_infer": b[1].as_dict(), "compute_output": b[2].as_dict()}
                                for size, b in sorted(self.batches.items())],
                "memory_usage": [],
            }

    def failures_by_reason(self) -> dict:
        with self._lock:
            return dict(self.fail_reasons)
