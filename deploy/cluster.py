"""Replicas of the server behind nginx, on one machine.

    python -m deploy.cluster --replicas N --model-repository DIR [--grpc-port 8001] [--http-port 8000]
        [--host 127.0.0.1] [--state results/cluster.json] [--restart] [--exit-timeout-secs 30]
        [-- FLAGS FOR EVERY REPLICA ...]

Starts N `backend.server` processes on free loopback ports and Debian's nginx in front of them
(its config rendered from deploy/nginx/nginx.conf.template): gRPC on --grpc-port (HTTP/2,
`grpc_pass`), HTTP on --http-port (`proxy_pass`), each request balanced on its own; a replica that
refuses or drops a connection is tried no more for a while and the request goes to another. Port 0
means a free port. When every replica is ready and the front answers, it writes the state file
(`{"grpc", "http", "replicas": [{"pid", "grpc", "http", "metrics"}], "nginx_pid"}`) and prints one
line per process. It runs in the foreground: SIGTERM or Ctrl-C stops nginx gracefully (requests in
flight finish), then the replicas (each drains), removes the state file and exits 0 with nothing
left listening. A replica that dies is logged (and started again on its ports with --restart).
Logs and nginx's rendered config go to --work-dir (default: `cluster/` beside the state file).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from backend import cli
from backend.server import STARTED

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "nginx" / "nginx.conf.template"
DEFAULT_STATE = Path("results/cluster.json")
REPLICA_HOST = "127.0.0.1"
INSTALL_HINT = ("nginx is not installed: `make install-cluster` installs it "
                "(apt-get update && apt-get install nginx)")
# The server logs Triton's line for each endpoint it serves, with the port it bound.
_ENDPOINTS = {"GRPCInferenceService": "grpc_port", "HTTPService": "http_port",
              "Metrics Service": "metrics_port"}
_PR_SET_PDEATHSIG = 1
log = logging.getLogger("deploy.cluster")


class ClusterError(Exception):
    """The cluster could not start (the message says which process and why)."""


class Stopped(Exception):
    """SIGTERM or SIGINT arrived while starting."""


def find_nginx() -> str | None:
    # /usr/sbin is not on every user's PATH.
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl   # looked up here: not in the forked child
except (OSError, AttributeError):
    _prctl = None


def _child_setup() -> None:
    """In each child: SIGTERM when the launcher dies, even by SIGKILL (Linux)."""
    if _prctl:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _kill_group(proc: subprocess.Popen) -> None:
    # Each child leads its own session (start_new_session): the terminal's Ctrl-C reaches only
    # the launcher, which stops them in order, and a group kill reaches nginx's workers too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # nginx's workers too
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file ('' when it cannot be read)."""
    try:
        return "".join(path.read_text().splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def _exit_text(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


@dataclass
class Replica:
    index: int
    log_path: Path
    grpc_port: int = 0      # 0 until the first start says which port it bound
    http_port: int = 0
    metrics_port: int = 0
    proc: subprocess.Popen | None = None
    reported: bool = False  # its death was logged
    retry_at: float = 0.0   # --restart: when to try again after a failed start
    _started: set = field(default_factory=set)   # endpoints whose 'Started' line was logged
    _pump: threading.Thread | None = None

    def endpoint(self, port: int) -> str:
        return f"{REPLICA_HOST}:{port}"

    def spawn(self, repository: str, exit_timeout: float, server_args: list[str]) -> None:
        cmd = [sys.executable, "-m", "backend.server", "--model-repository", repository,
               "--host", REPLICA_HOST, "--grpc-port", str(self.grpc_port),
               "--http-port", str(self.http_port), "--metrics-port", str(self.metrics_port),
               "--allow-http=true", "--allow-metrics=true",
               "--exit-timeout-secs", f"{exit_timeout:g}", *server_args]
        self._started = set()
        self.reported = False
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, preexec_fn=_child_setup)
        self._pump = threading.Thread(target=self._copy_log, args=(self.proc,), daemon=True)
        self._pump.start()

    def _copy_log(self, proc: subprocess.Popen) -> None:
        with open(self.log_path, "a", buffering=1) as out:
            for line in proc.stdout:
                out.write(line)
                m = STARTED.search(line)
                if m and m.group(1) not in self._started:
                    setattr(self, _ENDPOINTS[m.group(1)], int(m.group(2)))
                    self._started.add(m.group(1))

    def wait_ready(self, deadline: float, stop: threading.Event) -> None:
        """Until gRPC, HTTP and metrics are served and ServerReady is true."""
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException
        client = None
        try:
            while True:
                if stop.is_set():
                    raise Stopped
                if self.proc.poll() is not None:
                    self._pump.join(2)
                    raise ClusterError(f"replica {self.index} exited while starting "
                                       f"({_exit_text(self.proc.returncode)}):\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise ClusterError(f"replica {self.index} not ready in time:\n{self.log_tail()}")
                if len(self._started) == len(_ENDPOINTS):
                    client = client or grpcclient.InferenceServerClient(self.endpoint(self.grpc_port))
                    try:
                        if client.is_server_ready(client_timeout=2):
                            return
                    except InferenceServerException:
                        pass
                time.sleep(0.2)
        finally:
            if client:
                client.close()

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.log_path, lines)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def state(self) -> dict:
        return {"pid": self.proc.pid, "grpc": self.endpoint(self.grpc_port),
                "http": self.endpoint(self.http_port), "metrics": self.endpoint(self.metrics_port)}

    def line(self) -> str:
        s = self.state()
        return (f"replica {self.index}: pid {s['pid']}, grpc {s['grpc']}, http {s['http']}, "
                f"metrics {s['metrics']}, log {self.log_path}")


class _Template(string.Template):
    delimiter = "@"   # nginx's own variables start with $


class Front:
    """nginx, with the config rendered for the replicas' ports."""

    def __init__(self, nginx: str, workdir: Path, host: str, grpc_port: int, http_port: int):
        self.nginx, self.workdir, self.host = nginx, workdir, host
        self.grpc_port, self.http_port = grpc_port, http_port
        self.config = workdir / "nginx.conf"
        self.error_log = workdir / "nginx-error.log"
        self.proc: subprocess.Popen | None = None

    def render(self, replicas: list[Replica]) -> str:
        def servers(port_of):
            return "\n".join(f"        server {r.endpoint(port_of(r))} max_fails=1 fail_timeout=10s;"
                             for r in replicas)
        return _Template(TEMPLATE.read_text()).substitute(
            workdir=self.workdir, host=self.host, grpc_port=self.grpc_port,
            http_port=self.http_port, grpc_servers=servers(lambda r: r.grpc_port),
            http_servers=servers(lambda r: r.http_port))

    def _command(self, *extra: str) -> list[str]:
        return [self.nginx, "-p", str(self.workdir), "-c", str(self.config),
                "-e", str(self.error_log), *extra]

    def start(self, replicas: list[Replica], deadline: float, stop: threading.Event) -> None:
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.render(replicas))
        check = subprocess.run(self._command("-t", "-q"), capture_output=True, text=True)
        if check.returncode:
            raise ClusterError(f"nginx refuses {self.config}:\n{check.stderr.strip()}")
        self.proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_child_setup)
        pending = {self.grpc_port, self.http_port}
        while pending:
            if stop.is_set():
                raise Stopped
            if self.proc.poll() is not None:
                raise ClusterError(f"nginx exited while starting ({_exit_text(self.proc.returncode)}); "
                                   f"{self.error_log}:\n{_tail(self.error_log)}")
            if time.monotonic() > deadline:
                raise ClusterError(f"nginx does not listen on {sorted(pending)}:\n{_tail(self.error_log)}")
            for port in list(pending):
                with socket.socket() as s:
                    if s.connect_ex((_connect_host(self.host), port)) == 0:
                        pending.discard(port)
            time.sleep(0.1)


    def stop(self, timeout: float) -> None:
        """SIGQUIT: stop accepting, finish the requests in flight; SIGTERM, then SIGKILL, if late."""
        if not self.proc or self.proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGQUIT, timeout), (signal.SIGTERM, 5.0)):
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait_s)
                return
            except subprocess.TimeoutExpired:
                log.warning("nginx still running %.0f s after %s", wait_s, sig.name)
        _kill_group(self.proc)
        self.proc.wait()

    def line(self) -> str:
        return (f"nginx: pid {self.proc.pid}, grpc {self.host}:{self.grpc_port}, "
                f"http {self.host}:{self.http_port}, log {self.error_log}")


def _connect_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)


def write_state(path: Path, front: Front, replicas: list[Replica]) -> None:
    state = {"grpc": f"{front.host}:{front.grpc_port}", "http": f"{front.host}:{front.http_port}",
             "replicas": [r.state() for r in replicas], "nginx_pid": front.proc.pid}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)   # readers never see half a file


def stop_replicas(replicas: list[Replica], timeout: float) -> None:
    """SIGTERM to all (each finishes its requests in flight within `timeout`), SIGKILL if late."""
    running = [r for r in replicas if r.alive()]
    for r in running:
        r.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout + 5
    for r in running:
        try:
            r.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("replica %d (pid %d) still running after %.0f s: SIGKILL",
                      r.index, r.proc.pid, timeout + 5)
            _kill_group(r.proc)
            r.proc.wait()
    for r in replicas:
        if r._pump:
            r._pump.join(5)


class Cluster:
    def __init__(self, args: argparse.Namespace, nginx: str):
        self.args = args
        self.stop = threading.Event()
        self.workdir = (args.work_dir or args.state.parent / "cluster").resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # nginx's workers may run as another user (root's default is nobody): they read its folders.
        self.workdir.chmod(0o755)
        self.repository = str(Path(args.model_repository).resolve())
        self.replicas = []
        for i in range(args.replicas):
            log_path = self.workdir / f"replica-{i}.log"
            log_path.write_text("")
            self.replicas.append(Replica(i, log_path))
        grpc_port = args.grpc_port or free_port(_connect_host(args.host))
        http_port = args.http_port or free_port(_connect_host(args.host))
        self.front = Front(nginx, self.workdir, args.host, grpc_port, http_port)

    def start(self) -> None:
        deadline = time.monotonic() + self.args.start_timeout
        for r in self.replicas:   # all load their models at once
            r.spawn(self.repository, self.args.exit_timeout_secs, self.args.server_args)
        for r in self.replicas:
            r.wait_ready(deadline, self.stop)
        self.front.start(self.replicas, deadline, self.stop)
        write_state(self.args.state, self.front, self.replicas)
        for r in self.replicas:
            print(r.line(), flush=True)
        print(self.front.line(), flush=True)
        log.info("ready: %d replica(s) behind nginx; state in %s; SIGTERM or Ctrl-C stops all",
                 len(self.replicas), self.args.state)

    def supervise(self) -> int:
        """Until SIGTERM/SIGINT (0) or until nginx or every replica is gone (1)."""
        while not self.stop.wait(0.5):
            if self.front.proc.poll() is not None:
                log.error("nginx (pid %d) exited (%s): stopping the replicas", self.front.proc.pid,
                          _exit_text(self.front.proc.returncode))
                return 1
            for r in self.replicas:
                if not r.alive() and not r.reported:
                    log.error("replica %d (pid %d, grpc %s) exited (%s); nginx sends its requests "
                              "to the others; log %s:\n%s", r.index, r.proc.pid,
                              r.endpoint(r.grpc_port), _exit_text(r.proc.returncode), r.log_path,
                              r.log_tail(5))
                    r.reported = True
                if self.args.restart and not r.alive() and time.monotonic() >= r.retry_at:
                    self._restart(r)
            if not self.args.restart and not any(r.alive() for r in self.replicas):
                log.error("no replica left: stopping nginx")
                return 1
        return 0

    def _restart(self, r: Replica) -> None:
        log.info("restarting replica %d on its ports", r.index)
        r.spawn(self.repository, self.args.exit_timeout_secs, self.args.server_args)
        try:
            r.wait_ready(time.monotonic() + self.args.start_timeout, self.stop)
        except ClusterError as err:
            log.error("%s", err)
            r.reported = True
            r.retry_at = time.monotonic() + 5
            return
        except Stopped:
            return
        write_state(self.args.state, self.front, self.replicas)
        print(r.line(), flush=True)

    def shutdown(self) -> None:
        log.info("stopping: nginx first (requests in flight finish), then the replicas")
        self.front.stop(self.args.exit_timeout_secs)
        stop_replicas(self.replicas, self.args.exit_timeout_secs)
        self.args.state.unlink(missing_ok=True)
        log.info("stopped")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    server_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = cli.ArgumentParser(
        prog="python -m deploy.cluster", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=cli.exit_codes_help(details={
            cli.EXIT_OK: "stopped by SIGTERM or SIGINT",
            cli.EXIT_FAILED: "a usage error (one line on stderr), nginx missing, a process that "
                             "did not start, or nginx or every replica gone"}))
    p.add_argument("--replicas", type=int, default=2, help="server processes (default 2)")
    p.add_argument("--model-repository", required=True)
    p.add_argument("--host", default="127.0.0.1",
                   help="address nginx listens on (default 127.0.0.1; 0.0.0.0 to expose it)")
    p.add_argument("--grpc-port", type=int, default=8001, help="the front's gRPC port (0 = free)")
    p.add_argument("--http-port", type=int, default=8000, help="the front's HTTP port (0 = free)")
    p.add_argument("--state", type=Path, default=DEFAULT_STATE, help="state file written when ready")
    p.add_argument("--work-dir", type=Path, help="logs and nginx config (default: cluster/ "
                   "beside the state file)")
    p.add_argument("--restart", action="store_true", help="start a replica that died again")
    p.add_argument("--exit-timeout-secs", type=float, default=30,
                   help="grace period for requests in flight at SIGTERM (nginx, then each replica)")
    p.add_argument("--start-timeout", type=float, default=600, help="seconds to wait for readiness")
    args = p.parse_args(argv)
    if args.replicas < 1:
        p.error("--replicas must be at least 1")
    if not Path(args.model_repository).is_dir():
        p.error(f"--model-repository {args.model_repository}: no such folder")
    args.server_args = server_args
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname).1s cluster] %(message)s")
    nginx = find_nginx()
    if not nginx:
        cli.report(INSTALL_HINT)
        return cli.EXIT_FAILED
    args.state.parent.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(args, nginx)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: cluster.stop.set())
    code = 0
    try:
        cluster.start()
        code = cluster.supervise()
    except ClusterError as err:
        log.error("%s", err)
        code = 1
    except Stopped:
        pass
    finally:
        cluster.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
