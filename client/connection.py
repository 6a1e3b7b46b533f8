"""Connecting to the server: the connection flags every client shares (URL, TLS, request headers,
--wait-ready), one readiness check, and one clear message saying why a server cannot be used.

Also walks a model's ensemble steps, which the evaluation (random-weights check) and the
benchmark (per-step server statistics) both need.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import tritonclient.grpc as grpcclient
from tritonclient._plugin import InferenceServerClientPlugin
from tritonclient.utils import InferenceServerException

from backend.cli import EXIT_UNAVAILABLE, UserError, fail

DEFAULT_URL = "localhost:8001"
RANDOM_INIT = "random-init"
_RETRY_S = 0.5


class ServerUnavailable(Exception):
    """The server cannot be reached or the model is not ready."""


class _Headers(InferenceServerClientPlugin):
    """Adds fixed headers to every request (tritonclient's plugin hook), e.g. the header a server
    started with --grpc-restricted-protocol demands."""

    def __init__(self, headers: dict[str, str]):
        self.headers = headers

    def __call__(self, request):
        request.headers.update(self.headers)


@dataclass(frozen=True)
class Connection:
    """How to reach the server: tritonclient's TLS options, extra headers, how long to wait."""

    url: str = DEFAULT_URL
    ssl: bool = False
    root_certificates: str | None = None
    private_key: str | None = None
    certificate_chain: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    wait_ready_s: float = 0.0

    def client(self) -> grpcclient.InferenceServerClient:
        try:
            client = grpcclient.InferenceServerClient(
                self.url, ssl=self.ssl, root_certificates=self.root_certificates,
                private_key=self.private_key, certificate_chain=self.certificate_chain)
        except Exception as err:  # malformed URL, unreadable certificate and the like
            raise ServerUnavailable(f"cannot open a gRPC channel to {self.url!r}: {err}") from None
        if self.headers:
            client.register_plugin(_Headers(dict(self.headers)))
        return client


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection flags, named as tritonclient's examples and perf_analyzer name them."""
    group = parser.add_argument_group("connection")
    group.add_argument("-u", "--url", default=DEFAULT_URL, help="server gRPC address HOST:PORT")
    group.add_argument("--ssl", action="store_true",
                       help="TLS (implied by the three certificate options)")
    group.add_argument("--root-certificates", metavar="PEM",
                       help="CA certificate(s) to trust the server with (default: the system's)")
    group.add_argument("--private-key", metavar="PEM", help="client key, for mutual TLS")
    group.add_argument("--certificate-chain", metavar="PEM",
                       help="client certificate, for mutual TLS")
    group.add_argument("-H", "--header", action="append", default=[], metavar="NAME:VALUE",
                       help="extra header on every request (repeatable), e.g. the one a server "
                            "started with --grpc-restricted-protocol demands")
    group.add_argument("--wait-ready", type=float, default=0.0, metavar="S",
                       help="wait up to S seconds for the server and model to become ready "
                            "(default 0: fail at once)")


def from_args(args: argparse.Namespace) -> Connection:
    """The Connection of parsed `add_arguments` flags; UserError for a bad file or header."""
    files = {}
    for flag in ("root_certificates", "private_key", "certificate_chain"):
        path = getattr(args, flag)
        if path is not None and not Path(path).is_file():
            raise UserError(f"--{flag.replace('_', '-')} {path}: no such file")
        files[flag] = path
    if bool(files["private_key"]) != bool(files["certificate_chain"]):
        raise UserError("--private-key and --certificate-chain go together (mutual TLS)")
    headers = []
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UserError(f"--header {item!r}: expected NAME:VALUE")
        headers.append((name.strip().lower(), value.strip()))
    if args.wait_ready < 0:
        raise UserError("--wait-ready must be at least 0 seconds")
    return Connection(args.url, args.ssl or any(files.values()), **files, headers=tuple(headers),
                      wait_ready_s=args.wait_ready)


class _Reason(str):
    """Why a server cannot be used; `final` when waiting cannot cure it (TLS setup, header)."""

    final = False


class _Final(_Reason):
    final = True


def why_unreachable(conn: Connection, err: InferenceServerException) -> _Reason:
    """gRPC's channel error as a sentence naming the URL, the likely cause and the fix."""
    text = err.message() or str(err)
    url = conn.url
    if "Connection refused" in text:
        return _Reason(f"no server listens at {url}")
    if "resolving" in text or "Domain name not found" in text:
        return _Reason(f"cannot resolve the host of {url}")
    if "WRONG_VERSION_NUMBER" in text:
        return _Final(f"TLS handshake with {url} failed: the server does not speak TLS (drop --ssl)")
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return _Final(f"TLS handshake with {url} failed: the server's certificate is not trusted "
                      f"(give its CA with --root-certificates PEM)")
    if "andshake" in text:
        return _Final(f"TLS handshake with {url} failed: {text}")
    if "Socket closed" in text or "Connection reset" in text:
        if not conn.ssl:
            return _Final(f"the server at {url} closed the connection: it probably requires TLS "
                          f"(use --ssl --root-certificates PEM)")
        return _Final(f"the server at {url} closed the TLS connection: it probably requires a "
                      f"client certificate (--private-key PEM --certificate-chain PEM) or refuses "
                      f"this one")
    if "restricted, expecting header" in text:
        return _Final(f"the server at {url} refused the request: {text} "
                      f"(pass it with --header NAME:VALUE)")
    if "Deadline" in text or "DEADLINE" in str(err.status()):
        return _Reason(f"no answer from {url} in time")
    return _Reason(f"no inference server answers at {url}: {text}")


def connect(conn: Connection | str, model: str,
            timeout_s: float = 10.0) -> grpcclient.InferenceServerClient:
    """A client for the server of `conn` whose server is live and whose `model` is ready,
    retried for up to conn.wait_ready_s seconds; ServerUnavailable says why not."""
    if isinstance(conn, str):
        conn = Connection(conn)
    client = conn.client()
    deadline = time.monotonic() + conn.wait_ready_s
    while True:
        reason = _not_ready_reason(conn, client, model, timeout_s)
        if reason is None:
            return client
        left = deadline - time.monotonic()
        if left <= 0 or reason.final:
            client.close()
            waited = f" (after waiting {conn.wait_ready_s:g} s)" if conn.wait_ready_s else ""
            raise ServerUnavailable(f"{reason}{waited}")
        time.sleep(min(_RETRY_S, left))


def _not_ready_reason(conn: Connection, client, model: str, timeout_s: float) -> _Reason | None:
    try:
        client.is_server_live(client_timeout=timeout_s)
    except InferenceServerException as err:
        reason = why_unreachable(conn, err)
        return type(reason)(f"{reason} (wanted model '{model}')")
    try:
        ready = client.is_model_ready(model, client_timeout=timeout_s)
    except InferenceServerException as err:
        if "restricted, expecting header" in (err.message() or ""):
            return why_unreachable(conn, err)
        return _Reason(f"model '{model}' is not available on the server at {conn.url}: "
                       f"{err.message()}")
    if not ready:
        return _Reason(f"model '{model}' is not ready on the server at {conn.url}")
    return None


def unavailable(err: Exception) -> bool:
    """Whether err is gRPC's UNAVAILABLE (a server gone, starting, or refusing this request)."""
    return isinstance(err, InferenceServerException) and err.status() == "StatusCode.UNAVAILABLE"


def lost_server(err: Exception, client: grpcclient.InferenceServerClient, timeout_s: float = 5.0) -> bool:
    """Whether `err` means the server is gone: gRPC UNAVAILABLE and the server no longer live
    (UNAVAILABLE alone may be a refusal of this one request: overload, execution timeout)."""
    if not unavailable(err):
        return False
    try:
        return not client.is_server_live(client_timeout=timeout_s)
    except InferenceServerException:
        return True


def exit_unavailable(err: Exception) -> NoReturn:
    fail(str(err), EXIT_UNAVAILABLE)


def open_or_exit(opener, conn: Connection, model: str, read, what: str):
    """(opener(conn, model), read(that)) for a client's start (opener: connect or
    Endpoints.connect), or exit 2 naming why: the server's unavailability or the failed read of
    `what` ("the config")."""
    try:
        client = opener(conn, model)
        return client, read(client)
    except ServerUnavailable as err:
        exit_unavailable(err)
    except InferenceServerException as err:
        exit_unavailable(ServerUnavailable(f"cannot read {what} of '{model}' at {conn.url}: {err.message()}"))


def pipeline_configs(client: grpcclient.InferenceServerClient, model: str) -> dict:
    """Model config protos of `model` and, for an ensemble, of every step (recursively), by name."""
    configs: dict = {}
    pending = [model]
    while pending:
        name = pending.pop(0)
        if name in configs:
            continue
        config = client.get_model_config(name).config
        configs[name] = config
        pending.extend(step.model_name for step in config.ensemble_scheduling.step)
    return configs


def random_weight_models(client: grpcclient.InferenceServerClient, model: str) -> list[str]:
    """The models of the pipeline whose config says they run randomly initialised weights."""
    return [name for name, config in pipeline_configs(client, model).items()
            if "weights" in config.parameters
            and config.parameters["weights"].string_value == RANDOM_INIT]


def random_weights_banner(models: list[str], what: str = "The AP below is") -> str:
    bar = "!" * 78
    return (f"{bar}\n!!! WARNING: {', '.join(models)} run(s) RANDOM weights ('{RANDOM_INIT}').\n"
            f"!!! {what} MEANINGLESS: serve the trained checkpoint for real results\n"
            f"!!! (make model CHECKPOINT=path/to/hrnet_w32_coco_512x512-bcb8c247_20200816.pth).\n"
            f"{bar}")
