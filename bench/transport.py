"""`make bench`, transport table: large tensors through this server and through PyTriton.

An identity model echoes FP32 [1,3,512,512] (3 MiB in, 3 MiB out). NVIDIA's perf_analyzer drives it
over gRPC and HTTP at concurrency 1 and 4 (sync calls, one client thread per outstanding request)
against two servers started side by side on free loopback ports and measured in alternation:

* ours: `backend.server` on a temporary repository whose `identity` is tests/models/identity's
  model.py (the Python backend, in the server process);
* PyTriton 0.7 (NVIDIA's tritonserver 2.51 core, its Python backend stub and PyTriton's proxy to a
  Python callable: bench/peers/pytriton_identity.py), in its own venv from
  ../shared/tools/peers_env.sh.

Both models: INPUT0 -> OUTPUT0, FP32 dims [3,512,512], max_batch_size 8, dynamic batching without
queue delay, one instance. Each server's echo is checked (gRPC and HTTP) before anything is timed.

Measurement: perf_analyzer `--measurement-mode count_windows` (windows of at least
--window-requests requests; perf_analyzer polls every second, so a window lasts >= 1 s), a case is
stable once 3 consecutive windows agree within --stability % (retried once at twice that, else
reported as unstable). (`--request-count` is not used: its load stops after N requests but the
window runs to the next 1 s poll, which understates throughput by up to a second's idle.)
Each case runs --rounds times, servers alternating first; the table gives medians.

Quick re-run for one case, ours only:
    python -m bench.transport --only ours --protocol grpc --concurrency 1 --rounds 1

Skipped, saying why, where perf_analyzer cannot be prepared; PyTriton's columns are left out,
saying why, where its venv cannot be prepared or it does not start.
"""

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(os.path.dirname(ROOT), "shared", "tools")
PERF_ANALYZER = os.path.join(TOOLS, "perf_analyzer.sh")
PEERS_ENV = os.path.join(TOOLS, "peers_env.sh")
PEER_SCRIPT = os.path.join(ROOT, "bench", "peers", "pytriton_identity.py")
MODEL_PY = os.path.join(ROOT, "tests", "models", "identity", "1", "model.py")
MODEL = "identity"
OURS, PEER = "ours", "pytriton"
CONFIG = """name: "identity"
backend: "python"
max_batch_size: {max_batch}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {dims} ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {dims} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""
_NUM = r"([0-9.]+)"
PATTERNS = {
    "infer_per_s": rf"Throughput: {_NUM} infer/sec",
    "avg_us": rf"Avg latency: {_NUM} usec",
    "p50_us": rf"p50 latency: {_NUM} usec",
    "p99_us": rf"p99 latency: {_NUM} usec",
    "server_us": rf"Avg request latency: {_NUM} usec",
    "server_overhead_us": rf"\(overhead {_NUM} usec",
    "server_queue_us": rf"queue {_NUM} usec",
    "server_input_us": rf"compute input {_NUM} usec",
    "server_infer_us": rf"compute infer {_NUM} usec",
    "server_output_us": rf"compute output {_NUM} usec",
}


class Skip(Exception):
    """The table (or one server's part of it) cannot be measured here; the message says why."""


def perf_analyzer_ready():
    if not os.path.isfile(PERF_ANALYZER):
        raise Skip(f"{PERF_ANALYZER} is absent (no ../shared next to this checkout)")
    setup = subprocess.run(["bash", PERF_ANALYZER, "--setup-only"], capture_output=True, text=True, timeout=300)
    if setup.returncode != 0:
        raise Skip(f"perf_analyzer could not be prepared (exit {setup.returncode}): {setup.stderr.strip()[-300:]}")


def pytriton_env() -> tuple[str, str]:
    """(the PyTriton venv's python, the LD_LIBRARY_PATH its stub needs or '') from peers_env.sh."""
    if not os.path.isfile(PEERS_ENV):
        raise Skip(f"{PEERS_ENV} is absent (no ../shared next to this checkout)")
    try:
        run = subprocess.run(["bash", PEERS_ENV], capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired:
        raise Skip("peers_env.sh did not finish within 20 min")
    if run.returncode != 0:
        raise Skip(f"peers_env.sh could not prepare PyTriton (exit {run.returncode}): {run.stderr.strip()[-300:]}")
    for line in run.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "pytriton":
            return parts[1], "" if parts[2] == "-" else parts[2]
    raise Skip(f"peers_env.sh printed no pytriton line: {run.stdout[-300:]}")


@contextlib.contextmanager
def our_server(tmp: str, dims: str, max_batch: int):
    from tests.serverproc import start_server
    model_dir = os.path.join(tmp, "repo", MODEL)
    os.makedirs(os.path.join(model_dir, "1"))
    with open(MODEL_PY) as src, open(os.path.join(model_dir, "1", "model.py"), "w") as dst:
        dst.write(src.read())
    with open(os.path.join(model_dir, "config.pbtxt"), "w") as f:
        f.write(CONFIG.format(max_batch=max_batch, dims=", ".join(dims.split(","))))
    srv = start_server(os.path.join(tmp, "repo"))
    try:
        yield {"grpc": srv.url, "http": srv.http_url, "alive": srv.alive, "log": lambda: srv.log}
    finally:
        srv.stop()


@contextlib.contextmanager
def pytriton_server(tmp: str, python: str, libdir: str, dims: str, max_batch: int, timeout: float = 300):
    """PyTriton with the traps of peers_env.sh avoided: its venv's bin/ first on PATH, its
    interpreter's libdir on LD_LIBRARY_PATH, explicit free ports, stopped with SIGTERM (then the
    whole process group it started, should anything outlive it)."""
    from deploy.cluster import free_port
    from tests.serverproc import stop_process
    ports = {"http": free_port("127.0.0.1"), "grpc": free_port("127.0.0.1"), "metrics": free_port("127.0.0.1")}
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(python) + os.pathsep + env.get("PATH", "")
    if libdir:
        env["LD_LIBRARY_PATH"] = libdir + (os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    log_path = os.path.join(tmp, "pytriton.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([python, PEER_SCRIPT, "--http-port", str(ports["http"]), "--grpc-port", str(ports["grpc"]),
                             "--metrics-port", str(ports["metrics"]), "--shape", dims,
                             "--max-batch-size", str(max_batch)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=tmp)

    def tail():
        with open(log_path, errors="replace") as f:
            return f.read()[-3000:]
    try:
        url = f"127.0.0.1:{ports['grpc']}"
        import tritonclient.grpc as grpcclient
        client = grpcclient.InferenceServerClient(url)
        end = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise Skip(f"PyTriton exited with {proc.returncode} before serving:\n{tail()}")
            with contextlib.suppress(Exception):
                if client.is_model_ready(MODEL):
                    break
            if time.time() > end:
                raise Skip(f"PyTriton not ready within {timeout:.0f} s:\n{tail()}")
            time.sleep(0.5)
        client.close()
        yield {"grpc": url, "http": f"127.0.0.1:{ports['http']}", "alive": lambda: proc.poll() is None, "log": tail,
               "pgid": proc.pid}
    finally:
        stop_process(proc)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # tritonserver and its stub, if they outlived it
        log.close()


def check_echo(name: str, server: dict, dims: str):
    """One request per protocol; OUTPUT0 must equal INPUT0 bit for bit (warms both paths too)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    x = np.random.default_rng(1).standard_normal((1, *map(int, dims.split(","))), dtype=np.float32)
    for protocol, mod in (("grpc", grpcclient), ("http", httpclient)):
        client = mod.InferenceServerClient(server[protocol])
        try:
            inp = mod.InferInput("INPUT0", list(x.shape), "FP32")
            if protocol == "http":
                inp.set_data_from_numpy(x, binary_data=True)
            else:
                inp.set_data_from_numpy(x)
            out = client.infer(MODEL, [inp]).as_numpy("OUTPUT0")
        finally:
            client.close()
        if out is None or out.shape != x.shape or out.dtype != x.dtype or not np.array_equal(out, x):
            got = None if out is None else (out.shape, out.dtype)
            raise RuntimeError(f"{name} over {protocol}: OUTPUT0 is not INPUT0 (got {got})")


def parse(stdout: str) -> dict:
    """perf_analyzer's report (the stable measurement) as {metric: value}: client throughput and
    latencies, and the server-side split it reads from ModelStatistics."""
    return {key: float(m.group(1)) for key, pat in PATTERNS.items() if (m := re.search(pat, stdout))}


def run_perf_analyzer(url: str, protocol: str, concurrency: int, args, stability: float) -> tuple[dict | None, str]:
    """({metric: value} or None when perf_analyzer found no stable measurement, its output)."""
    cmd = ["bash", PERF_ANALYZER, "-m", MODEL, "-u", url, "-i", protocol,
           "--concurrency-range", str(concurrency), "--measurement-mode", "count_windows",
           "--measurement-request-count", str(args.window_requests), "-s", f"{stability:g}",
           "-r", str(args.max_trials)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = f"$ {' '.join(cmd)}\n{run.stdout}\n{run.stderr}"
    if "Failed to obtain stable measurement" in out:
        return None, out
    values = parse(run.stdout)
    if run.returncode != 0 or "infer_per_s" not in values:
        raise RuntimeError(f"perf_analyzer failed (exit {run.returncode}):\n{out[-4000:]}")
    return values, out


def measure(name, server, protocol, concurrency, args) -> dict | None:
    for stability in (args.stability, 2 * args.stability):
        values, out = run_perf_analyzer(server[protocol], protocol, concurrency, args, stability)
        if args.verbose:
            print(out, flush=True)
        if not server["alive"]():
            raise RuntimeError(f"{name} server exited during the run:\n{server['log']()[-3000:]}")
        if values is not None:
            values["stability"] = stability
            return values
    print(f"  {name} {protocol} c={concurrency}: no stable measurement at -s {2 * args.stability:g}", flush=True)
    return None


def _median(runs: list, key: str):
    vals = [r[key] for r in runs if r and key in r]
    return statistics.median(vals) if vals else None


def _fmt(v, spec=".1f"):
    return "—" if v is None else format(v, spec)


def _paired_ratio(ours: list, peer: list) -> str:
    """Median (min-max) of the per-round ratios: each round measures both servers back to back,
    so a pair shares the machine's load of that moment."""
    ratios = [a["infer_per_s"] / b["infer_per_s"] for a, b in zip(ours, peer) if a and b]
    if not ratios:
        return "—"
    text = f"{statistics.median(ratios):.2f}"
    return text + (f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else "")


def report(results: dict, servers: list, cases: list, args) -> str:
    """The Markdown table: medians over rounds; ours ÷ PyTriton from the rounds' pairs, HTTP ÷ gRPC
    from the medians."""
    med = {(s, p, c): {k: _median(results[(s, p, c)], k) for k in (*PATTERNS, "stability")}
           for s in servers for p, c in cases}
    lines = []
    head = "| protocol | concurrency | ours infer/s | ours p50 ms"
    rule = "|---|---|---|---"
    if PEER in servers:
        head += " | PyTriton infer/s | PyTriton p50 ms | ours ÷ PyTriton (range)"
        rule += "|---|---|---"
    head += " | HTTP ÷ gRPC (ours" + (", PyTriton)" if PEER in servers else ")")
    rule += "|---|"
    lines += [head + " |", rule]
    for p, c in cases:
        row = [p, str(c)]
        ours = med.get((OURS, p, c), {})
        row += [_fmt(ours.get("infer_per_s")), _fmt(ours.get("p50_us") and ours["p50_us"] / 1000, ".2f")]
        if PEER in servers:
            peer = med[(PEER, p, c)]
            row += [_fmt(peer["infer_per_s"]), _fmt(peer["p50_us"] and peer["p50_us"] / 1000, ".2f")]
            row.append(_paired_ratio(results[(OURS, p, c)], results[(PEER, p, c)]) if OURS in servers else "—")
        ratio = []
        if p == "http":
            for s in servers:
                h, g = med.get((s, "http", c), {}).get("infer_per_s"), med.get((s, "grpc", c), {}).get("infer_per_s")
                ratio.append(_fmt(h and g and h / g, ".2f"))
        row.append(" / ".join(ratio) if ratio else "")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Server-side split (perf_analyzer's reading of ModelStatistics, avg µs per request, medians):", "",
              "| server | protocol | concurrency | request | overhead | queue | compute input | compute infer | compute output |",
              "|---|---|---|---|---|---|---|---|---|"]
    keys = ("server_us", "server_overhead_us", "server_queue_us", "server_input_us", "server_infer_us", "server_output_us")
    for s in servers:
        for p, c in cases:
            m = med[(s, p, c)]
            lines.append(f"| {s} | {p} | {c} | " + " | ".join(_fmt(m[k], ".0f") for k in keys) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__.split("\n\n")[0],
                                epilog="Without ../shared/tools the table is skipped, saying why.")
    p.add_argument("--only", choices=(OURS, PEER, "both"), default="both", help="which servers to measure")
    p.add_argument("--protocol", nargs="+", choices=("grpc", "http"), default=["grpc", "http"])
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 4])
    p.add_argument("--rounds", type=int, default=3, help="runs of each case per server (median reported)")
    p.add_argument("--window-requests", type=int, default=50, help="--measurement-request-count of each window")
    p.add_argument("--stability", type=float, default=25.0, help="perf_analyzer -s (%%), doubled on one retry")
    p.add_argument("--max-trials", type=int, default=12, help="perf_analyzer -r: windows tried per case")
    p.add_argument("--shape", default="3,512,512", help="dims without the batch dimension (batch 1 is sent)")
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--verbose", action="store_true", help="print perf_analyzer's full output")
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    # SIGTERM ends the run through the finally blocks below: both servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    mib = 4 * int(np.prod([int(d) for d in args.shape.split(",")])) / 2**20
    title = (f"\nTransport — identity FP32 [1,{args.shape}] ({mib:g} MiB in and out), perf_analyzer sync, "
             f"count_windows of >= {args.window_requests} requests, -s {args.stability:g} %, "
             f"median of {args.rounds} rounds, {os.cpu_count()} cores")
    try:
        perf_analyzer_ready()
    except Skip as e:
        print(f"{title}\nTransport table skipped: {e}")
        return 0
    wanted = [OURS, PEER] if args.only == "both" else [args.only]
    cases = [(proto, c) for proto in args.protocol for c in args.concurrency]
    print(title, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-transport-") as tmp, contextlib.ExitStack() as stack:
        servers = {}
        if OURS in wanted:
            servers[OURS] = stack.enter_context(our_server(tmp, args.shape, args.max_batch_size))
        if PEER in wanted:
            try:
                python, libdir = pytriton_env()
                servers[PEER] = stack.enter_context(pytriton_server(tmp, python, libdir, args.shape, args.max_batch_size))
            except Skip as e:
                print(f"PyTriton left out: {e}", flush=True)
        if not servers:
            print("Transport table skipped: no server to measure")
            return 0 if args.only == PEER else 1
        for name, server in servers.items():
            check_echo(name, server, args.shape)
        names = list(servers)
        results = {(s, proto, c): [] for s in names for proto, c in cases}
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for proto, c in cases:
                for s in order:
                    v = measure(s, servers[s], proto, c, args)
                    results[(s, proto, c)].append(v)
                    if v:
                        print(f"  round {r + 1}: {s:8s} {proto:4s} c={c}: {v['infer_per_s']:8.1f} infer/s, "
                              f"p50 {v['p50_us'] / 1000:.2f} ms", flush=True)
        print("\n" + report(results, names, cases, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
