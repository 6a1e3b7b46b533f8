"""Throughput and latency of any model of the server, measured with perf_analyzer's method.

    python -m client.perf --model NAME [-u localhost:8001] [--concurrency-range 1:4:1]
        [--measurement-interval 5000] [--stability-percentage 10] [--max-trials 10]
        [--input-data DIR_OR_JSON] [--shape NAME:d1,d2,...] [--async | --streaming]
        [--shared-memory none|system [--output-shared-memory-size BYTES]] [-f results.csv]
        [--export-input-data FILE] [--wait-ready S] [--ssl --root-certificates PEM ...] [-H NAME:VALUE]

For each concurrency level N, N requests are kept in flight (N threads of blocking calls, or
callbacks with --async, or one bidirectional stream with --streaming) while measurement windows
follow each other; a request counts in the window where it ends. A window lasts at least 1.2 x
the interval and ends when a request ends, so it holds whole requests: a model of a second per
request measures as steadily as a fast one (perf_analyzer's time windows would count +-1
request of ~6 and rarely agree). Once the last three windows agree within the stability
percentage (throughput and average latency, max/min), they are merged and reported:
throughput, latency percentiles, and the server's own breakdown from ModelStatistics deltas
(queue, compute input/infer/output per model and per composing model of an ensemble). With
--shared-memory system, output regions are sized from the model's metadata when the shape is
fixed, else from the first response to each data sample (--output-shared-memory-size sets
them). Examples:

    python -m client.perf --model hrnet_pose --concurrency-range 1:2
    python -m client.perf --model hrnet_om --shape input:1,3,512,512      # the raw network
    python -m client.perf --model hrnet_pose --export-input-data images.json   # for perf_analyzer
"""

from __future__ import annotations

import argparse
import csv
import functools
import itertools
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, serialize_byte_tensor, triton_to_np_dtype
from tritonclient.utils import shared_memory as shm

from backend import cli
from client import connection, server_stats
from client.connection import EXIT_UNAVAILABLE, Connection, connect, open_or_exit, lost_server
from client.perf_inputs import TensorSpec, load_samples, parse_shape_args, tensor_specs
from client.perf_inputs import to_perf_analyzer_json

STABILITY_WINDOW = 3          # perf_analyzer's: the last three windows must agree
PROBED_SAMPLES = 16           # data samples sent once to size the output regions
PERCENTILES = (50, 90, 95, 99)
CSV_HEADER = ["Concurrency", "Inferences/Second", "Client Send", "Network+Server Send/Recv",
              "Server Queue", "Server Compute Input", "Server Compute Infer",
              "Server Compute Output", "Client Recv"] + [f"p{p} latency" for p in PERCENTILES]


@dataclass
class Window:
    """One measurement window, or several merged."""

    duration_ns: int
    latencies_ns: np.ndarray                       # of the requests that ended in the window
    send_ns: int = 0                               # summed over those requests
    recv_ns: int = 0
    server: dict = field(default_factory=dict)     # model name -> server_stats.ModelTimes

    @property
    def count(self) -> int:
        return int(self.latencies_ns.size)

    @property
    def throughput(self) -> float:
        return self.count / (self.duration_ns / 1e9) if self.duration_ns else 0.0

    @property
    def avg_latency_us(self) -> float:
        return float(self.latencies_ns.mean()) / 1e3 if self.count else 0.0

    @property
    def avg_send_us(self) -> float:
        """Marshalling time per request ('Client Send')."""
        return self.send_ns / max(self.count, 1) / 1e3

    @property
    def avg_recv_us(self) -> float:
        """Unmarshalling time per request ('Client Recv')."""
        return self.recv_ns / max(self.count, 1) / 1e3

    @functools.cached_property
    def _sorted_ns(self) -> np.ndarray:
        return np.sort(self.latencies_ns)

    def percentile_us(self, p: int) -> float:
        """perf_analyzer's rule: the sorted latency at index round(p/100 * (n-1))."""
        ordered = self._sorted_ns
        if not ordered.size:
            return 0.0
        return float(ordered[int(p / 100 * (ordered.size - 1) + 0.5)]) / 1e3


def is_stable(windows: list[Window], threshold: float) -> bool:
    """The last three windows have throughput and average latency within max/min <= 1+threshold."""
    if len(windows) < STABILITY_WINDOW:
        return False
    last = windows[-STABILITY_WINDOW:]
    ips = [w.throughput for w in last]
    lat = [w.avg_latency_us for w in last]
    if min(ips) <= 0 or min(lat) <= 0:
        return False
    return max(ips) / min(ips) <= 1 + threshold and max(lat) / min(lat) <= 1 + threshold


def merge_windows(windows: list[Window]) -> Window:
    return Window(duration_ns=sum(w.duration_ns for w in windows),
                  latencies_ns=np.concatenate([w.latencies_ns for w in windows]),
                  send_ns=sum(w.send_ns for w in windows),
                  recv_ns=sum(w.recv_ns for w in windows),
                  server=server_stats.merge([w.server for w in windows]) if windows[0].server
                  else {})


def parse_range(text: str) -> list[int]:
    """'start[:end[:step]]' -> concurrency levels, as perf_analyzer's --concurrency-range."""
    try:
        parts = [int(p) for p in text.split(":")]
        if not 1 <= len(parts) <= 3 or parts[0] < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"--concurrency-range {text!r}: expected start[:end[:step]], "
                         f"start >= 1") from None
    start, end, step = (parts + [parts[0], 1][len(parts) - 1:])[:3]
    if end < start or step < 1:
        raise ValueError(f"--concurrency-range {text!r}: needs end >= start and step >= 1")
    return list(range(start, end + 1, step))


class SharedMemoryRegions:
    """System shared memory: one region per input per data sample, one per output per slot."""

    def __init__(self, client, inputs: list[TensorSpec], samples: list[dict],
                 outputs: list[TensorSpec], slots: int, output_sizes: dict[str, int]):
        self.client = client
        self.handles: dict[str, object] = {}
        self.sizes: dict[str, int] = {}
        prefix = f"client_perf_{os.getpid()}"
        try:
            for i, sample in enumerate(samples):
                for spec in inputs:
                    array = sample[spec.name]
                    data = serialize_byte_tensor(array) if spec.datatype == "BYTES" else array
                    size = len(data.item()) if spec.datatype == "BYTES" else array.nbytes
                    self._add(f"{prefix}_{spec.name}_{i}", size, data)
            for slot in range(slots):
                for spec in outputs:
                    self._add(f"{prefix}_out_{spec.name}_{slot}", output_sizes[spec.name])
        except Exception:
            self.close()
            raise
        self.prefix = prefix

    def _add(self, name: str, size: int, data: np.ndarray | None = None) -> None:
        handle = shm.create_shared_memory_region(name, "/" + name, max(size, 1), create_only=True)
        self.handles[name] = handle
        self.sizes[name] = size
        if data is not None:
            shm.set_shared_memory_region(handle, [data])
        self.client.register_system_shared_memory(name, "/" + name, max(size, 1))

    def input(self, name: str, sample: int) -> tuple[str, int]:
        region = f"{self.prefix}_{name}_{sample}"
        return region, self.sizes[region]

    def output(self, name: str, slot: int) -> tuple[str, int, object]:
        region = f"{self.prefix}_out_{name}_{slot}"
        return region, self.sizes[region], self.handles[region]

    def close(self) -> None:
        for name, handle in self.handles.items():
            try:
                self.client.unregister_system_shared_memory(name)
            except InferenceServerException:
                pass   # the server may be gone; the region is still ours to unlink
            shm.destroy_shared_memory_region(handle)
        self.handles.clear()


def infer_inputs(specs: list[TensorSpec], sample: dict, regions: SharedMemoryRegions | None = None,
                 index: int = 0) -> list[grpcclient.InferInput]:
    """The InferInputs of one data sample: its data, or its shared-memory regions."""
    tensors = []
    for spec in specs:
        tensor = grpcclient.InferInput(spec.name, list(sample[spec.name].shape), spec.datatype)
        if regions:
            tensor.set_shared_memory(*regions.input(spec.name, index))
        else:
            tensor.set_data_from_numpy(sample[spec.name])
        tensors.append(tensor)
    return tensors


def output_region_sizes(client, model: str, inputs: list[TensorSpec], outputs: list[TensorSpec],
                        samples: list[dict], override: int | None) -> tuple[dict[str, int], str]:
    """Bytes of each output's shared-memory region, and where the figure comes from.

    A fixed shape gives its size; otherwise `override`, or the largest answer of the first
    PROBED_SAMPLES samples (sent once, without shared memory), doubled when samples remain
    unprobed. A region too small fails the request, as in Triton (the old fixed 100 KiB default
    failed on `preprocess`, whose output is megabytes).
    """
    sizes = {s.name: s.byte_size for s in outputs if s.byte_size is not None}
    open_sized = [s.name for s in outputs if s.name not in sizes]
    if not open_sized:
        return sizes, "the model's metadata"
    if override is not None:
        return {**sizes, **dict.fromkeys(open_sized, override)}, "--output-shared-memory-size"
    largest = dict.fromkeys(open_sized, 1)
    for index in range(min(len(samples), PROBED_SAMPLES)):
        response = client.infer(model, infer_inputs(inputs, samples[index]), outputs=[
            grpcclient.InferRequestedOutput(name) for name in open_sized]).get_response()
        for tensor, raw in zip(response.outputs, response.raw_output_contents):
            largest[tensor.name] = max(largest[tensor.name], len(raw))
    headroom = 2 if len(samples) > PROBED_SAMPLES else 1
    source = f"the largest answer to {min(len(samples), PROBED_SAMPLES)} data sample(s)"
    return {**sizes, **{n: v * headroom for n, v in largest.items()}}, (
        source + (" x 2" if headroom > 1 else ""))


class Load:
    """Keeps `concurrency` requests in flight and records when each started and ended.

    Every slot sends its next request as soon as its previous one is answered: a thread per slot
    for blocking calls, a callback chain for --async, and one shared stream for --streaming.
    """

    def __init__(self, conn: Connection, model: str, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 samples: list[dict], mode: str = "sync", regions: SharedMemoryRegions | None = None):
        self.model, self.outputs = model, outputs
        self.samples, self.mode, self.regions = samples, mode, regions
        self.client = conn.client()
        self._next_sample = itertools.count()
        self._lock = threading.Lock()
        self._records: list[tuple[int, int, int, int]] = []   # start, end, send, recv (ns)
        self._last_end = 0                                     # of any request so far (ns)
        self._recorded = threading.Condition(self._lock)
        self.errors: list[Exception] = []
        self._running = False
        self._active = 0
        self._drained = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self._pending: dict[str, tuple[int, int, int]] = {}
        self._request_ids = itertools.count()
        # Set up (data serialised) once, then sent as they are, as perf_analyzer prepares inputs.
        self._prepared = [infer_inputs(inputs, sample, regions, i) for i, sample in enumerate(samples)]
        if mode == "streaming":
            self.client.start_stream(callback=self._on_stream)

    # -- request building and reading ------------------------------------------------------
    def _build(self, slot: int):
        inputs = self._prepared[next(self._next_sample) % len(self.samples)]
        outputs = []
        for spec in self.outputs:
            requested = grpcclient.InferRequestedOutput(spec.name)
            if self.regions:
                region, size, _ = self.regions.output(spec.name, slot)
                requested.set_shared_memory(region, size)
            outputs.append(requested)
        return inputs, outputs

    def _read(self, result, slot: int) -> None:
        """Unmarshals the outputs, as an application would (counted as 'Client Recv')."""
        for spec in self.outputs:
            if self.regions:
                output = result.get_output(spec.name)
                if output is not None and output.datatype != "BYTES":
                    _, _, handle = self.regions.output(spec.name, slot)
                    shm.get_contents_as_numpy(handle, triton_to_np_dtype(output.datatype),
                                              list(output.shape)).copy()
            else:
                result.as_numpy(spec.name)

    def _record(self, start: int, send: int, result, slot: int) -> None:
        received = time.perf_counter_ns()
        self._read(result, slot)
        end = time.perf_counter_ns()
        with self._lock:
            self._records.append((start, end, send, end - received))
            self._last_end = max(self._last_end, end)
            self._recorded.notify_all()

    def _fail(self, error: Exception) -> None:
        with self._lock:
            self.errors.append(error)
            self._running = False
            self._recorded.notify_all()

    def wait_for_end(self, after_ns: int, timeout_s: float) -> None:
        """Waits until some request has ended at or after `after_ns` (or one failed)."""
        with self._lock:
            self._recorded.wait_for(lambda: self._last_end >= after_ns or self.errors,
                                    timeout=timeout_s)

    def _slot_done(self) -> None:
        with self._lock:
            self._active -= 1
            self._drained.notify_all()

    # -- the three ways of keeping requests in flight --------------------------------------
    def _sync_slot(self, slot: int) -> None:
        try:
            while self._running:
                start = time.perf_counter_ns()
                inputs, outputs = self._build(slot)
                send = time.perf_counter_ns() - start
                result = self.client.infer(self.model, inputs, outputs=outputs)
                self._record(start, send, result, slot)
        except Exception as err:  # noqa: BLE001 - any failure ends the measurement, reported
            self._fail(err)
        finally:
            self._slot_done()

    def _issue(self, slot: int) -> None:
        if not self._running:
            self._slot_done()
            return
        start = time.perf_counter_ns()
        try:
            inputs, outputs = self._build(slot)
            send = time.perf_counter_ns() - start
            if self.mode == "async":
                self.client.async_infer(
                    self.model, inputs, outputs=outputs,
                    callback=lambda result, error: self._on_async(slot, start, send, result, error))
            else:
                request_id = str(next(self._request_ids))
                with self._lock:
                    self._pending[request_id] = (slot, start, send)
                self.client.async_stream_infer(self.model, inputs, outputs=outputs,
                                               request_id=request_id)
        except Exception as err:  # noqa: BLE001
            self._fail(err)
            self._slot_done()

    def _on_async(self, slot: int, start: int, send: int, result, error) -> None:
        if error is None:
            try:
                self._record(start, send, result, slot)
            except Exception as err:  # noqa: BLE001 - gRPC would swallow it in its callback
                error = err
        if error is not None:
            self._fail(error)
            self._slot_done()
            return
        self._issue(slot)

    def _on_stream(self, result, error) -> None:
        if error is not None:
            # A stream error carries no request id: stop everything in flight.
            self._fail(error)
            with self._lock:
                lost, self._pending = len(self._pending), {}
            for _ in range(lost):
                self._slot_done()
            return
        with self._lock:
            entry = self._pending.pop(result.get_response().id, None)
        if entry is None:
            return
        slot, start, send = entry
        try:
            self._record(start, send, result, slot)
        except Exception as err:  # noqa: BLE001
            self._fail(err)
            self._slot_done()
            return
        self._issue(slot)

    # -- control ---------------------------------------------------------------------------
    def start(self, concurrency: int) -> None:
        self._running = True
        self._active = concurrency
        for slot in range(concurrency):
            if self.mode == "sync":
                thread = threading.Thread(target=self._sync_slot, args=(slot,), daemon=True)
                thread.start()
                self._threads.append(thread)
            else:
                self._issue(slot)

    def stop(self, timeout_s: float = 120.0) -> None:
        """Stops issuing and waits for the requests in flight."""
        with self._lock:
            self._running = False
            self._drained.wait_for(lambda: self._active <= 0, timeout=timeout_s)
        for thread in self._threads:
            thread.join(timeout=1.0)
        self._threads.clear()

    def take(self) -> np.ndarray:
        """The records since the last call, as an int64 array [n, 4] (start, end, send, recv)."""
        with self._lock:
            records, self._records = self._records, []
        return np.array(records, np.int64).reshape(-1, 4)

    def close(self) -> None:
        if self.mode == "streaming":
            self.client.stop_stream()
        self.client.close()


class RequestError(Exception):
    """Requests failed during a measurement."""


def measure_level(load: Load, concurrency: int, reader: server_stats.StatsReader | None,
                  interval_ms: int, threshold: float, max_trials: int,
                  verbose: bool) -> tuple[Window, bool, int]:
    """Runs windows at one concurrency until stable or max_trials; (merged, stable, trials).

    Windows start and end when a request ends (the first at the first answer, which also keeps
    a cold start out), so each holds whole requests however long a request takes.
    """
    length_ns = int(interval_ms * 1.2 * 1e6)
    # A request still unanswered this long after its window's nominal end closes the window
    # where it stands (a hung model): the stability check then sees the gap.
    patience_s = max(60.0, 10 * interval_ms / 1e3)
    load.start(concurrency)
    try:
        windows: list[Window] = []
        load.wait_for_end(time.perf_counter_ns(), patience_s)
        records = load.take()
        if load.errors:
            raise RequestError(load.errors[0])
        window_start = int(records[:, 1].max()) if records.size else time.perf_counter_ns()
        carry = records[records[:, 1] > window_start]
        stats_before = reader.snapshot() if reader else None
        for trial in range(1, max_trials + 1):
            nominal_end = window_start + length_ns
            time.sleep(max(0.0, (nominal_end - time.perf_counter_ns()) / 1e9))
            load.wait_for_end(nominal_end, patience_s)
            if load.errors:
                raise RequestError(load.errors[0])
            records = np.concatenate([carry, load.take()])
            ended = records[:, 1]
            late = ended[ended >= nominal_end]
            window_end = int(late.min()) if late.size else time.perf_counter_ns()
            stats_after = reader.snapshot() if reader else None
            inside = records[(ended > window_start) & (ended <= window_end)]
            carry = records[ended > window_end]
            window = Window(window_end - window_start, inside[:, 1] - inside[:, 0],
                            int(inside[:, 2].sum()), int(inside[:, 3].sum()),
                            reader.delta(stats_before, stats_after) if reader else {})
            windows.append(window)
            if verbose:
                print(f"  Pass [{trial}] throughput: {window.throughput:.2f} infer/sec. "
                      f"Avg latency: {window.avg_latency_us:.0f} usec", flush=True)
            window_start, stats_before = window_end, stats_after
            if is_stable(windows, threshold):
                return merge_windows(windows[-STABILITY_WINDOW:]), True, trial
        return merge_windows(windows[-STABILITY_WINDOW:]), False, max_trials
    finally:
        load.stop()


def report_level(concurrency: int, merged: Window, stable: bool, model: str,
                 reader: server_stats.StatsReader | None) -> list[str]:
    lines = [f"Request concurrency: {concurrency}" + ("" if stable else "  (NOT STABLE)"),
             "  Client: ",
             f"    Request count: {merged.count}",
             f"    Throughput: {merged.throughput:.2f} infer/sec"]
    if merged.count:
        lat = merged.latencies_ns / 1e3
        std = float(lat.std(ddof=1)) if merged.count > 1 else 0.0
        send, recv = merged.avg_send_us, merged.avg_recv_us
        lines.append(f"    Avg latency: {merged.avg_latency_us:.0f} usec "
                     f"(standard deviation {std:.0f} usec)")
        lines += [f"    p{p} latency: {merged.percentile_us(p):.0f} usec" for p in PERCENTILES]
        lines.append(f"    Avg gRPC time: {merged.avg_latency_us:.0f} usec (marshal {send:.0f} "
                     f"usec + response wait {merged.avg_latency_us - send - recv:.0f} usec + "
                     f"unmarshal {recv:.0f} usec)")
    if reader and merged.server:
        lines.append("  Server: ")
        lines += server_stats.format_breakdown(model, merged.server, reader.steps, "    ")
    return lines


def csv_row(concurrency: int, merged: Window, model: str) -> list:
    """A row of perf_analyzer's CSV (microseconds, integers as perf_analyzer writes them)."""
    send, recv = merged.avg_send_us, merged.avg_recv_us
    server = merged.server.get(model)
    parts = [0.0] * len(server_stats.PARTS)
    if server and server.success_count:   # perf_analyzer divides every part by successes
        parts = [getattr(server, f"{p}_ns") / server.success_count / 1e3
                 for p in server_stats.PARTS]
    network = max(0.0, merged.avg_latency_us - send - recv - sum(parts))
    return ([concurrency, round(merged.throughput, 4), int(send), int(network)]
            + [int(p) for p in parts] + [int(recv)]
            + [int(merged.percentile_us(p)) for p in PERCENTILES])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="python -m client.perf", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=cli.exit_codes_help(cli.EXIT_UNAVAILABLE, cli.EXIT_UNSTABLE, cli.EXIT_INTERRUPTED,
                                   details={cli.EXIT_OK: "every level measured and stable",
                                            cli.EXIT_FAILED: "requests failed, or a usage error "
                                                             "(one line on stderr)"}))
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("--concurrency-range", default="1", help="start[:end[:step]]")
    parser.add_argument("-p", "--measurement-interval", type=int, default=5000,
                        help="window length in ms (each window lasts 1.2 x this)")
    parser.add_argument("-s", "--stability-percentage", type=float, default=10.0)
    parser.add_argument("-r", "--max-trials", type=int, default=10)
    parser.add_argument("--input-data", help="random (default), zero, a folder or a JSON file")
    parser.add_argument("--shape", action="append", help="NAME:d1,d2,... for dynamic inputs")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--async", dest="async_mode", action="store_true")
    mode.add_argument("--streaming", action="store_true")
    parser.add_argument("--shared-memory", choices=("none", "system"), default="none")
    parser.add_argument("--output-shared-memory-size", type=int, metavar="BYTES",
                        help="bytes of each output region whose size the metadata leaves open "
                             "(default: the largest first answer to each data sample)")
    parser.add_argument("-f", "--latency-report-file", type=Path, help="CSV to write")
    parser.add_argument("--export-input-data", type=Path,
                        help="write the request data as perf_analyzer JSON and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every window")
    connection.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.max_trials < 1 or args.measurement_interval < 1:
        parser.error("--max-trials and --measurement-interval must be positive")
    if args.output_shared_memory_size is not None and args.output_shared_memory_size < 1:
        parser.error("--output-shared-memory-size must be positive")
    try:
        args.levels = parse_range(args.concurrency_range)
        args.shapes = parse_shape_args(args.shape)
    except ValueError as err:
        parser.error(str(err))
    return args


def write_csv(path: Path, rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")   # as perf_analyzer: every row ends in \n
        writer.writerow(CSV_HEADER)
        # perf_analyzer sorts the rows by throughput.
        writer.writerows(sorted(rows, key=lambda r: r[1]))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, argv)


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    conn = connection.from_args(args)
    mode = "async" if args.async_mode else "streaming" if args.streaming else "sync"
    client, (metadata, config) = open_or_exit(
        connect, conn, args.model, lambda c: (c.get_model_metadata(args.model, as_json=True),
                                              c.get_model_config(args.model, as_json=True)["config"]),
        "metadata/config")
    try:
        inputs = tensor_specs(metadata, config, args.shapes, "inputs")
        outputs = tensor_specs(metadata, config, {}, "outputs")
        samples = load_samples(inputs, args.input_data)
    except (ValueError, OSError, KeyError) as err:
        client.close()
        raise cli.UserError(str(err)) from None
    if args.export_input_data:
        args.export_input_data.write_text(json.dumps(to_perf_analyzer_json(inputs, samples)))
        print(f"wrote {len(samples)} request(s) for '{args.model}' to {args.export_input_data}")
        return 0

    reader = None
    try:
        if "statistics" in client.get_server_metadata().extensions:
            reader = server_stats.StatsReader(client, args.model)
            reader.snapshot()
    except InferenceServerException as err:
        print(f"note: no server statistics ({err.message()})", file=sys.stderr)
        reader = None

    print(f"*** Measurement Settings ***\n  Model: {args.model}  Mode: {mode}  "
          f"Shared memory: {args.shared_memory}\n  Measurement window: "
          f"{args.measurement_interval} msec x 1.2, stability {args.stability_percentage:g}% "
          f"over {STABILITY_WINDOW} windows, at most {args.max_trials} windows\n  Inputs: "
          + ", ".join(f"{s.name} {s.datatype} {list(s.shape)}" for s in inputs)
          + f" ({len(samples)} data sample(s))\n", flush=True)

    regions = load = None
    rows, summary, unstable, code = [], [], [], cli.EXIT_OK
    try:
        if args.shared_memory == "system":
            sizes, source = output_region_sizes(client, args.model, inputs, outputs, samples,
                                                args.output_shared_memory_size)
            print("  Output regions: " + ", ".join(f"{n} {b} bytes" for n, b in sizes.items())
                  + f" (from {source})", flush=True)
            regions = SharedMemoryRegions(client, inputs, samples, outputs, max(args.levels),
                                          sizes)
        load = Load(conn, args.model, inputs, outputs, samples, mode, regions)
        for level in args.levels:
            merged, stable, trials = measure_level(
                load, level, reader, args.measurement_interval,
                args.stability_percentage / 100, args.max_trials, args.verbose)
            if not stable:
                unstable.append(level)
                print(f"WARNING: no stable measurement within {trials} windows for concurrency "
                      f"{level}; the figures below merge the last {STABILITY_WINDOW}. Try a "
                      f"longer --measurement-interval, more --max-trials or a larger "
                      f"--stability-percentage.", file=sys.stderr)
            print("\n".join(report_level(level, merged, stable, args.model, reader)), flush=True)
            rows.append(csv_row(level, merged, args.model))
            summary.append(f"Concurrency: {level}, throughput: {merged.throughput:.2f} "
                           f"infer/sec, latency {merged.avg_latency_us:.0f} usec"
                           + ("" if stable else " (not stable)"))
    except (RequestError, InferenceServerException) as err:
        cause = err.args[0] if isinstance(err, RequestError) else err
        hint = ("; with --shared-memory system a too small output region fails requests: "
                "--output-shared-memory-size BYTES" if regions else "")
        cli.report(f"requests to '{args.model}' at {args.url} failed: {cause}{hint}")
        code = EXIT_UNAVAILABLE if lost_server(cause, client) else cli.EXIT_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = cli.EXIT_INTERRUPTED
    finally:
        if load:
            load.stop(timeout_s=10)
            load.close()
        if regions:
            regions.close()
        client.close()

    if summary:
        print("Inferences/Second vs. Client Average Batch Latency")
        print("\n".join(summary))
    if args.latency_report_file and rows:
        write_csv(args.latency_report_file, rows)
        print(f"wrote {args.latency_report_file}")
    if unstable and code == cli.EXIT_OK:
        cli.report(f"no stable measurement at concurrency {', '.join(map(str, unstable))} "
                   f"(exit {cli.EXIT_UNSTABLE}): the figures are printed, marked NOT STABLE")
        code = cli.EXIT_UNSTABLE
    return code


if __name__ == "__main__":
    sys.exit(main())
