"""Start a real server process on a free loopback port and stop it (tests, benchmarks, soak)."""

import os
import signal
import subprocess
import sys
import threading
import time

from backend.server import STARTED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServerProcess:
    def __init__(self, repo, *args, env=None, timeout=180.0, host="127.0.0.1"):
        self.repo = str(repo)
        cmd = [sys.executable, "-m", "backend.server", "--model-repository", self.repo,
               "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0", "--host", host, *map(str, args)]
        self.log_lines = []
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env={**os.environ, **(env or {})})
        self.port = self.http_port = self.metrics_port = None
        ready = threading.Event()
        # the server logs gRPC, then HTTP, then metrics (those it serves), then the model table
        self._expect = {name for name, flag in (("GRPCInferenceService", "grpc"), ("HTTPService", "http"),
                                                ("Metrics Service", "metrics")) if _serves(args, flag)}
        ports = {}

        def pump():
            for line in self.proc.stdout:
                self.log_lines.append(line)
                m = STARTED.search(line)
                if m and m.group(1) not in ports:
                    ports[m.group(1)] = int(m.group(2))
                    self.port = ports.get("GRPCInferenceService")
                    self.http_port = ports.get("HTTPService")
                    self.metrics_port = ports.get("Metrics Service")
                    if self._expect <= set(ports):
                        ready.set()
            ready.set()
        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        ready.wait(timeout)
        if not self._expect or not self._expect <= set(ports):
            self.stop()
            raise RuntimeError("server did not start:\n" + self.log)
        self.url = f"{host}:{self.port}" if self.port else None
        self.http_url = f"{host}:{self.http_port}" if self.http_port else None
        self.metrics_url = f"http://{host}:{self.metrics_port}/metrics" if self.metrics_port else None

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=60) -> int:
        code = stop_process(self.proc, sig, timeout)
        self._pump.join(5)
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def stop_process(proc: subprocess.Popen, sig=signal.SIGTERM, timeout=60) -> int:
    """Send `sig`, wait up to `timeout` s, then kill: the process's exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _serves(args, what: str) -> bool:
    """Whether the server's arguments leave --allow-<what> on (its default)."""
    args = [str(a) for a in args]
    for i, a in enumerate(args):
        if a == f"--allow-{what}":
            nxt = args[i + 1] if i + 1 < len(args) else ""
            return nxt.lower() not in ("false", "0", "no", "off")
        if a.startswith(f"--allow-{what}="):
            return a.split("=", 1)[1].lower() not in ("false", "0", "no", "off")
    return True


def start_server(repo, *args, **kw) -> ServerProcess:
    return ServerProcess(repo, *args, **kw)


def wait_ready(url, model, timeout=120):
    import tritonclient.grpc as grpcclient
    client = grpcclient.InferenceServerClient(url)
    end = time.time() + timeout
    while time.time() < end:
        try:
            if client.is_model_ready(model):
                return client
        except Exception:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"model {model} not ready at {url}")
