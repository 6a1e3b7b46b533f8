"""Soak test (`make soak`): many concurrent clients on loopback against a real server, mixing the
identity model, the test repository's ensemble (ensemble_add, unary and streamed) and the
hrnet_pose pipeline with a small network. Every request carries a unique id; every answer must
come back once, under that id, with the right data. Prints a summary table; exit status 1 on
any error, wrong, lost, duplicated or unmatched answer, or resident memory growing too much.

    python -m tests.reliability.soak [--clients 64] [--duration 60] [--max-requests 250000]
        [--pose-clients 4] [--stream-clients 12] [--url HOST:PORT --pid PID]
"""

import argparse
import asyncio
import collections
import os
import shutil
import sys
import tempfile
import time

import grpc
import numpy as np

from proto import grpc_service_pb2_grpc as pb_grpc
from tests.reliability.samples import small_image
from tests.reliability.wire import MAX_MESSAGE, output, request, rss_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_RSS_GROWTH = 0.10
STREAM_WINDOW = 4  # requests a streaming client keeps in flight
# Generous: under full load a pipeline request waits long for the CPU; slow is not an error here.
REQUEST_TIMEOUT = 600


def build_repo(dest: str) -> str:
    """The test models and the pose pipeline (reduced random-weight network) in one repository."""
    from tests.conftest import build_pose_repo, copy_test_repo
    return build_pose_repo(copy_test_repo(dest))


def pose_images() -> list:
    """Small synthetic JPEGs (the random-weight network makes grouping slow on photos)."""
    return [small_image(i) for i in range(4)]


class Ledger:
    """Every request sent and every answer received, by id."""

    def __init__(self):
        self.sent = {}                               # id -> workload
        self.answered = collections.Counter()        # id -> answers
        self.latency = collections.defaultdict(list)  # workload -> seconds
        self.errors = collections.defaultdict(collections.Counter)  # workload -> code -> n
        self.wrong = collections.Counter()           # workload -> wrong answers
        self.unmatched = 0                           # answers with an id never sent
        self.messages = collections.Counter()        # (workload, message) -> n

    def send(self, rid, workload):
        assert rid not in self.sent
        self.sent[rid] = workload

    def answer(self, rid, workload, seconds, ok_data: bool):
        if rid not in self.sent:
            self.unmatched += 1
            return
        self.answered[rid] += 1
        self.latency[workload].append(seconds)
        if not ok_data:
            self.wrong[workload] += 1

    def error(self, rid, workload, code: str, message: str):
        if rid in self.sent:
            self.answered[rid] += 1
        self.errors[workload][code] += 1
        self.messages[(workload, message[:200])] += 1

    def totals(self):
        """(lost, duplicated): requests never answered, requests answered more than once."""
        lost = sum(1 for rid in self.sent if self.answered[rid] == 0)
        duplicated = sum(1 for n in self.answered.values() if n > 1)
        return lost, duplicated

    def error_count(self) -> int:
        return sum(sum(c.values()) for c in self.errors.values())


def _identity_request(rng, rid):
    x = rng.standard_normal((int(rng.integers(1, 5)), int(rng.integers(1, 65)))).astype(np.float32)
    return request("identity", {"INPUT0": x}, id=rid), lambda r: np.array_equal(output(r, "OUTPUT0"), x)


def _ensemble_request(rng, rid):
    batch = int(rng.integers(1, 5))
    a, b = (rng.standard_normal((batch, 4)).astype(np.float32) for _ in range(2))
    return request("ensemble_add", {"INPUT0": a, "INPUT1": b}, id=rid), lambda r: (
        np.allclose(output(r, "OUTPUT0"), a + b) and np.allclose(output(r, "OUTPUT1"), a - b))


class Soak:
    def __init__(self, url, clients, pose_clients, stream_clients, duration, max_requests, seed=0):
        self.url, self.duration, self.max_requests = url, duration, max_requests
        self.clients, self.pose_clients, self.stream_clients = clients, pose_clients, stream_clients
        self.ledger = Ledger()
        self.seed = seed
        self.issued = 0
        self.images = pose_images()
        self.pose_reference = {}

    def _more(self) -> bool:
        if time.monotonic() >= self.stop_at or self.issued >= self.max_requests:
            return False
        self.issued += 1
        return True

    def _channel(self):
        return grpc.aio.insecure_channel(self.url, options=[
            ("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)])

    async def _unary(self, n, kind):
        rng = np.random.default_rng(self.seed * 1000 + n)
        async with self._channel() as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            seq = 0
            while self._more():
                rid = f"{kind}-{n}-{seq}"
                seq += 1
                if kind == "hrnet_pose":
                    i = int(rng.integers(len(self.images)))
                    msg = request("hrnet_pose", {"IMAGE": np.array([self.images[i]], dtype=object)}, id=rid)
                    check = lambda r, i=i: self._pose_ok(r, i)  # noqa: E731
                else:
                    msg, check = (_identity_request if kind == "identity" else _ensemble_request)(rng, rid)
                self.ledger.send(rid, kind)
                t0 = time.monotonic()
                try:
                    resp = await stub.ModelInfer(msg, timeout=REQUEST_TIMEOUT)
                except grpc.aio.AioRpcError as e:
                    self.ledger.error(rid, kind, e.code().name, e.details() or "")
                    continue
                self.ledger.answer(resp.id, kind, time.monotonic() - t0, resp.id == rid and check(resp))

    async def _stream(self, n):
        """One bidirectional stream with STREAM_WINDOW requests in flight, answers matched by id."""
        kind = "ensemble_add (stream)"
        rng = np.random.default_rng(self.seed * 1000 + 500 + n)
        pending = {}
        window = asyncio.Semaphore(STREAM_WINDOW)
        done_sending = asyncio.Event()

        async def requests():
            seq = 0
            while True:
                await window.acquire()
                if not self._more():
                    break
                rid = f"stream-{n}-{seq}"
                seq += 1
                msg, check = _ensemble_request(rng, rid)
                pending[rid] = (check, time.monotonic())
                self.ledger.send(rid, kind)
                yield msg
            done_sending.set()

        async with self._channel() as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            try:
                async for reply in stub.ModelStreamInfer(requests(), timeout=self.duration + REQUEST_TIMEOUT):
                    rid = reply.infer_response.id
                    entry = pending.pop(rid, None)
                    window.release()
                    if reply.error_message:
                        self.ledger.error(rid, kind, "stream error", reply.error_message)
                    elif entry is None:
                        self.ledger.answer(rid, kind, 0.0, False)  # unmatched or duplicated
                    else:
                        check, t0 = entry
                        self.ledger.answer(rid, kind, time.monotonic() - t0, check(reply.infer_response))
            except grpc.aio.AioRpcError as e:
                for rid in pending:
                    self.ledger.error(rid, kind, e.code().name, e.details() or "")

    def _pose_ok(self, resp, i) -> bool:
        """Well formed, and the same as the first answer for this image (an answer meant for
        another image would differ)."""
        kp, scores = output(resp, "KEYPOINTS"), output(resp, "SCORES")
        if kp.ndim != 3 or kp.shape[1:] != (17, 3) or scores.shape != kp.shape[:1]:
            return False
        ref = self.pose_reference.setdefault(i, (kp.copy(), scores.copy()))
        return (kp.shape == ref[0].shape and np.allclose(kp, ref[0], atol=1e-2)
                and np.allclose(scores, ref[1], atol=1e-4))

    async def run(self, pid=None, rss_every=1.0):
        self.started = time.monotonic()
        self.stop_at = self.started + self.duration
        self.rss = []
        unary = self.clients - self.pose_clients - self.stream_clients
        tasks = [self._unary(n, "identity" if n % 2 == 0 else "ensemble_add") for n in range(unary)]
        tasks += [self._unary(n, "hrnet_pose") for n in range(self.pose_clients)]
        tasks += [self._stream(n) for n in range(self.stream_clients)]

        async def sample():
            while time.monotonic() < self.stop_at:
                self.rss.append((time.monotonic() - self.started, rss_bytes(pid)))
                await asyncio.sleep(rss_every)
        jobs = [asyncio.ensure_future(t) for t in tasks]
        sampler = asyncio.ensure_future(sample()) if pid else None
        await asyncio.gather(*jobs)
        self.elapsed = time.monotonic() - self.started
        if sampler:
            sampler.cancel()
            self.rss.append((self.elapsed, rss_bytes(pid)))
        return self

    def rss_growth(self):
        """(after warm-up, end, peak, growth): warm-up = the first fifth of the run."""
        if not self.rss:
            return None
        warm = [b for t, b in self.rss if t >= self.elapsed / 5] or [self.rss[-1][1]]
        base, end = warm[0], self.rss[-1][1]
        return base, end, max(b for _, b in self.rss), (end - base) / base

    def failures(self) -> list:
        lost, duplicated = self.ledger.totals()
        out = []
        for what, n in (("errors", self.ledger.error_count()), ("wrong answers", sum(self.ledger.wrong.values())),
                        ("lost", lost), ("duplicated", duplicated), ("unmatched", self.ledger.unmatched)):
            if n:
                out.append(f"{n} {what}")
        growth = self.rss_growth()
        if growth and growth[3] > MAX_RSS_GROWTH:
            out.append(f"server RSS grew {growth[3]:.1%} after warm-up (limit {MAX_RSS_GROWTH:.0%})")
        return out

    def table(self) -> str:
        led = self.ledger
        unary = self.clients - self.pose_clients - self.stream_clients
        lines = [f"soak: {self.clients} clients ({unary} unary identity/ensemble_add, {self.stream_clients} "
                 f"streaming ensemble_add x{STREAM_WINDOW} in flight, {self.pose_clients} hrnet_pose) for "
                 f"{self.elapsed:.1f} s against {self.url}",
                 f"{'workload':<24}{'requests':>9}{'errors':>8}{'wrong':>7}{'req/s':>9}{'p50 ms':>9}"
                 f"{'p95 ms':>9}{'p99 ms':>9}"]
        sent = collections.Counter(led.sent.values())
        for kind in sorted(sent):
            lat = np.array(led.latency[kind]) * 1000 if led.latency[kind] else np.zeros(1)
            p50, p95, p99 = np.percentile(lat, [50, 95, 99])
            lines.append(f"{kind:<24}{sent[kind]:>9}{sum(led.errors[kind].values()):>8}{led.wrong[kind]:>7}"
                         f"{sent[kind] / self.elapsed:>9.1f}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}")
        total = len(led.sent)
        lost, duplicated = led.totals()
        lines.append(f"{'total':<24}{total:>9}{led.error_count():>8}"
                     f"{sum(led.wrong.values()):>7}{total / self.elapsed:>9.1f}")
        lines.append(f"answers: {sum(led.answered.values())} for {total} requests; lost {lost}, "
                     f"duplicated {duplicated}, unmatched {led.unmatched}")
        for kind, codes in led.errors.items():
            if codes:
                lines.append(f"errors of {kind}: " + ", ".join(f"{k} {v}" for k, v in codes.items()))
        for (kind, message), n in led.messages.most_common(5):
            lines.append(f"  {n} x {kind}: {message}")
        growth = self.rss_growth()
        if growth:
            base, end, peak, g = growth
            lines.append(f"server RSS: {base / 2**20:.1f} MiB after warm-up, {end / 2**20:.1f} MiB at the end "
                         f"({g:+.1%}), peak {peak / 2**20:.1f} MiB")
        return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--pose-clients", type=int, default=4, help="of --clients, sending hrnet_pose")
    p.add_argument("--stream-clients", type=int, default=12, help="of --clients, streaming ensemble_add")
    p.add_argument("--duration", type=float, default=60, help="seconds (bounded)")
    p.add_argument("--max-requests", type=int, default=250_000, help="stop after this many requests")
    p.add_argument("--url", help="an already running server (with the test models and the pipeline)")
    p.add_argument("--pid", type=int, help="its process id, for the RSS samples")
    args = p.parse_args(argv)
    if args.pose_clients + args.stream_clients > args.clients:
        p.error("--pose-clients + --stream-clients must not exceed --clients")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    server = tmp = None
    if args.url:
        url, pid = args.url, args.pid
    else:
        from tests.serverproc import start_server
        tmp = tempfile.mkdtemp(prefix="soak-")
        print("building the repository (test models + pose pipeline with a small network)...", flush=True)
        server = start_server(build_repo(tmp), "--model-control-mode", "explicit", "--load-model", "*")
        url, pid = server.url, server.proc.pid
    try:
        soak = asyncio.run(Soak(url, args.clients, args.pose_clients, args.stream_clients, args.duration,
                                args.max_requests).run(pid))
    finally:
        if server is not None:
            server.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(soak.table())
    failures = soak.failures()
    if server is not None and not server.alive() and server.proc.returncode not in (0, None):
        failures.append(f"server exited with {server.proc.returncode}")
    print("FAILED: " + "; ".join(failures) if failures else "OK: no error, every answer matched its request once")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
