"""`python -m backend.server --model-repository DIR`: the server process, with tritonserver's flags."""

import argparse
import asyncio
import logging
import os
import re
import signal
import sys

import grpc

from aiohttp import web

from . import cli, host_tuning, preflight
from .core import BINARY_EXTENSION, InferenceCore
from .http_service import HttpService
from .metrics import metrics_app
from .grpc_service import Servicer, add_to_server
from .restrictions import Restrictions
from .repository import Repository
from .repository_poll import DEFAULT_POLL_SECS, RepositoryPoller

log = logging.getLogger("backend.server")
# The lines that say where each endpoint listens (Triton's wording), and their parser for the tools
# that start servers (tests/serverproc.py, deploy/cluster.py): port 0 means the OS chose one.
STARTED = re.compile(r"Started (GRPCInferenceService|HTTPService|Metrics Service) at \S+:(\d+)")
MAX_MESSAGE = 2**31 - 1
CLOSE_MIN_S = 0.1
OWN_LOGGERS = ("backend", "hrnet", "triton")   # triton.*: pb_utils.Logger of the models


def parse_args(argv=None):
    p = cli.ArgumentParser(prog="python -m backend.server",
                           description="Triton-compatible inference server (KServe v2 gRPC).",
                           epilog=cli.exit_codes_help(details={
                               cli.EXIT_OK: "stopped by SIGTERM/SIGINT",
                               cli.EXIT_FAILED: "a usage error (bad flag, repository, TLS file "
                                                "or port; one line on stderr, checked before "
                                                "any model loads) or a model failed to load "
                                                "with --exit-on-error"}))
    p.add_argument("--model-repository", required=True, help="model repository folder")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--grpc-port", type=preflight.port, default=8001, help="gRPC port (0 = any free port)")
    p.add_argument("--http-port", type=preflight.port, default=8000, help="HTTP/REST port (0 = any free port)")
    p.add_argument("--metrics-port", type=preflight.port, default=8002,
                   help="Prometheus metrics port (0 = any free port)")
    p.add_argument("--allow-http", type=_bool, default=True, nargs="?", const=True,
                   help="serve HTTP/REST (KServe v2) on --http-port (default true)")
    p.add_argument("--allow-metrics", type=_bool, default=True, nargs="?", const=True,
                   help="serve Prometheus metrics on --metrics-port /metrics (default true)")
    p.add_argument("--allow-grpc", type=_bool, default=True, nargs="?", const=True)
    p.add_argument("--model-control-mode", choices=["none", "explicit", "poll"], default="none",
                   help="none: load every model at start; explicit: only --load-model, then "
                        "RepositoryModelLoad/Unload; poll: load every model, then follow the "
                        "repository's changes every --repository-poll-secs")
    p.add_argument("--repository-poll-secs", type=float, default=DEFAULT_POLL_SECS,
                   help=f"poll mode: seconds between looks at the repository (default {DEFAULT_POLL_SECS})")
    p.add_argument("--load-model", action="append", default=[], help="model to load at start "
                   "(explicit mode only; repeatable; '*' = all)")
    p.add_argument("--model-config-name", default="", help="use <model>/configs/<name>.pbtxt where present")
    p.add_argument("--disable-auto-complete-config", action="store_true",
                   help="backends do not complete model configs (inputs, outputs, max_batch_size, "
                        "model.py's auto_complete_config): every model needs a full config.pbtxt")
    p.add_argument("--strict-readiness", type=_bool, default=True, nargs="?", const=True)
    p.add_argument("--exit-on-error", type=_bool, default=False, nargs="?", const=True,
                   help="exit if any model fails to load")
    p.add_argument("--log-verbose", type=int, default=0,
                   help="1: the server's own work (model loads, request routing, batches, "
                        "timings); 2: also the libraries' debug logs")
    p.add_argument("--model-execution-timeout", type=float, default=0, metavar="SECONDS",
                   help="fail a model execution's requests after this long (0 = no limit)")
    p.add_argument("--max-request-bytes", type=int, default=MAX_MESSAGE,
                   help="refuse gRPC messages larger than this (RESOURCE_EXHAUSTED; default 2 GiB - 1)")
    p.add_argument("--max-inflight-requests", type=int, default=0,
                   help="refuse requests beyond this many at once (0 = no limit)")
    p.add_argument("--exit-timeout-secs", type=float, default=30,
                   help="grace period for requests in flight at SIGTERM")
    p.add_argument("--grpc-use-ssl", type=_bool, default=False, nargs="?", const=True)
    p.add_argument("--grpc-use-ssl-mutual", type=_bool, default=False, nargs="?", const=True)
    p.add_argument("--grpc-server-cert", default="")
    p.add_argument("--grpc-server-key", default="")
    p.add_argument("--grpc-root-cert", default="")
    p.add_argument("--grpc-restricted-protocol", action="append", default=[],
                   metavar="<api list>:<key>=<value>")
    p.add_argument("--http-restricted-api", action="append", default=[],
                   metavar="<api list>:<key>=<value>",
                   help="the listed HTTP API groups require that header (403 otherwise)")
    args = p.parse_args(argv)
    if args.max_request_bytes < 1:
        p.error("--max-request-bytes must be positive")
    if args.repository_poll_secs <= 0:
        p.error("--repository-poll-secs must be positive")
    if args.exit_timeout_secs < 0:
        p.error("--exit-timeout-secs must be at least 0")
    return args


def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got '{v}'")


def _credentials(args):
    if not (args.grpc_use_ssl or args.grpc_use_ssl_mutual):
        return None

    def read(path, what):
        if not path:
            raise SystemExit(f"--grpc-use-ssl needs {what}")
        with open(path, "rb") as f:
            return f.read()
    key = read(args.grpc_server_key, "--grpc-server-key")
    cert = read(args.grpc_server_cert, "--grpc-server-cert")
    root = read(args.grpc_root_cert, "--grpc-root-cert") if (args.grpc_root_cert or args.grpc_use_ssl_mutual) else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=root,
                                       require_client_auth=args.grpc_use_ssl_mutual)


async def serve(args) -> int:
    repository = Repository(args.model_repository, args.model_config_name, args.model_execution_timeout,
                            auto_complete=not args.disable_auto_complete_config)
    core = InferenceCore(repository, explicit_control=args.model_control_mode == "explicit",
                         strict_readiness=args.strict_readiness, max_inflight=args.max_inflight_requests)
    try:
        restrictions = Restrictions(args.grpc_restricted_protocol)
        http_restrictions = Restrictions(args.http_restricted_api, flag="--http-restricted-api")
    except ValueError as e:
        cli.report(str(e))
        return cli.EXIT_FAILED
    _warn_ignored_load_model(args)
    poller = (RepositoryPoller(repository, args.repository_poll_secs)
              if args.model_control_mode == "poll" else None)
    failed = await core.start(args.load_model)
    for name, reason in failed:
        log.error("model '%s' failed to load: %s", name, reason)
    if failed and args.exit_on_error:
        log.error("exiting: %d model(s) failed to load (--exit-on-error)", len(failed))
        await core.close()
        return 1
    _log_table(repository)

    stops = []  # each endpoint's stop(grace) -> awaitable
    if args.allow_grpc:
        server = grpc.aio.server(options=[
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.max_receive_message_length", min(args.max_request_bytes, MAX_MESSAGE)),
            ("grpc.so_reuseport", 0),
        ])
        add_to_server(Servicer(core, restrictions), server)
        address = f"{args.host}:{args.grpc_port}"
        creds = _credentials(args)
        port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
        if not port:
            log.error("could not bind %s", address)
            return 1
        await server.start()
        log.info("Started GRPCInferenceService at %s:%d", args.host, port)
        stops.append(server.stop)
    try:
        if args.allow_http:
            core.extensions.append(BINARY_EXTENSION)
            http = HttpService(core, http_restrictions, min(args.max_request_bytes, MAX_MESSAGE))
            stops.append(await _start_site(http.app, args.host, args.http_port, "HTTPService",
                                           args.exit_timeout_secs))
        if args.allow_metrics:
            stops.append(await _start_site(metrics_app(core), args.host, args.metrics_port,
                                           "Metrics Service", args.exit_timeout_secs))
    except OSError as e:
        log.error("could not serve HTTP/metrics: %s", e)
        await asyncio.gather(*(stop(0) for stop in stops))
        await core.close()
        return 1

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    polling = loop.create_task(poller.run()) if poller else None
    await stop.wait()
    log.info("Stopping: finishing requests in flight (up to %g s)", args.exit_timeout_secs)
    stop_at = loop.time() + args.exit_timeout_secs
    core.shutting_down = True
    if polling:
        polling.cancel()
    await asyncio.gather(*(stop(args.exit_timeout_secs) for stop in stops))
    try:
        # What is left of the grace period; past it, a moment for idle models' finalize.
        await asyncio.wait_for(core.close(), max(CLOSE_MIN_S, stop_at - loop.time()))
    except asyncio.TimeoutError:
        # A model thread still runs (a hung execute): it cannot be interrupted, and both asyncio
        # and the interpreter would wait for it at exit. The grace period is the bound.
        log.error("a model is still executing after the %g s grace period: exiting without it",
                  args.exit_timeout_secs)
        logging.shutdown()
        os._exit(0)
    log.info("Stopped")
    return 0


async def _start_site(app, host: str, port: int, what: str, grace: float):
    """Serve an aiohttp app in this event loop; logs Triton's 'Started <what> at HOST:PORT'.
    Returns its stop(grace) (the runner was given the grace period)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0][1]
    log.info("Started %s at %s:%d", what, host, bound)
    return lambda _grace: runner.cleanup()


def _warn_ignored_load_model(args):
    if args.load_model and args.model_control_mode != "explicit":
        log.warning("--load-model %s ignored: it applies only with --model-control-mode explicit "
                    "(mode %s loads every model of the repository)",
                    " ".join(args.load_model), args.model_control_mode)


def _configure_logging(verbose: int):
    """--log-verbose 1: this server's own debug lines (backend.*, hrnet.*, models' pb_utils
    Logger); the libraries (asyncio, grpc, aiohttp, numba) only from 2 on, or they drown them."""
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname).1s %(name)s] %(message)s")
    if verbose > 0:
        for name in OWN_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)


def _log_table(repository):
    rows = repository.index()
    if not rows:
        log.warning("no models in %s", repository.root)
    for name, version, state, reason in rows:
        log.info("model %-24s version %-3s %s%s", name, version or "-", state, f"  ({reason})" if reason else "")


def main(argv=None):
    args = parse_args(argv)
    _configure_logging(args.log_verbose)
    try:
        preflight.check(args)
    except cli.UserError as err:
        cli.fail(str(err))
    host_tuning.keep_freed_memory()
    sys.exit(asyncio.run(serve(args)))


if __name__ == "__main__":
    main()
