"""Start a real server process on a free loopback port and stop it (tests, benchmarks, soak)."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STARTED = re.compile(r"Started GRPCInferenceService at [^:]+:(\d+)")


class ServerProcess:
    def __init__(self, repo, *args, env=None, timeout=180.0, host="127.0.0.1"):
        self.repo = str(repo)
        cmd = [sys.executable, "-m", "backend.server", "--model-repository", self.repo,
               "--grpc-port", "0", "--host", host, *map(str, args)]
        self.log_lines = []
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env={**os.environ, **(env or {})})
        self.port = None
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.log_lines.append(line)
                m = _STARTED.search(line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()
        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        ready.wait(timeout)
        if self.port is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + self.log)
        self.url = f"{host}:{self.port}"

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(5)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


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
