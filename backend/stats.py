"""Per model-version inference statistics with Triton's fields (ModelStatistics RPC)."""

import threading
import time

from proto import grpc_service_pb2 as pb

from .types import Timing


class _Duration:
    __slots__ = ("count", "ns")

    def __init__(self):
        self.count = 0
        self.ns = 0

    def add(self, ns: int, n: int = 1):
        self.count += n
        self.ns += ns

    def fill(self, msg):
        msg.count = self.count
        msg.ns = self.ns


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

    def request_done(self, ok: bool, total_ns: int, timing: Timing | None = None):
        """One request finished (success or failure), with its phase times."""
        with self._lock:
            self.last_inference_ms = int(time.time() * 1000)
            if not ok:
                self.fail.add(total_ns)
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

    def fill(self, msg: pb.ModelStatistics):
        with self._lock:
            msg.last_inference = self.last_inference_ms
            msg.inference_count = self.inference_count
            msg.execution_count = self.execution_count
            s = msg.inference_stats
            self.success.fill(s.success)
            self.fail.fill(s.fail)
            self.queue.fill(s.queue)
            self.compute_input.fill(s.compute_input)
            self.compute_infer.fill(s.compute_infer)
            self.compute_output.fill(s.compute_output)
            for size in sorted(self.batches):
                b = self.batches[size]
                bs = msg.batch_stats.add()
                bs.batch_size = size
                b[0].fill(bs.compute_input)
                b[1].fill(bs.compute_infer)
                b[2].fill(bs.compute_output)
