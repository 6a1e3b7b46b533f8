"""Connecting to the server: one readiness check, one clear message naming URL and model, exit 2.

Also walks a model's ensemble steps, which the evaluation (random-weights check) and the
benchmark (per-step server statistics) both need.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

EXIT_UNAVAILABLE = 2
DEFAULT_URL = "localhost:8001"
RANDOM_INIT = "random-init"


class ServerUnavailable(Exception):
    """The server cannot be reached or the model is not ready."""


def connect(url: str, model: str, timeout_s: float = 10.0) -> grpcclient.InferenceServerClient:
    """A client for `url` whose server is live and whose `model` is ready."""
    try:
        client = grpcclient.InferenceServerClient(url)
    except Exception as err:  # malformed URL and the like
        raise ServerUnavailable(f"cannot open a gRPC channel to {url!r}: {err}") from None
    try:
        client.is_server_live(client_timeout=timeout_s)
    except InferenceServerException as err:
        client.close()
        raise ServerUnavailable(
            f"no inference server answers at {url} (wanted model '{model}'): "
            f"{err.message()}") from None
    try:
        ready = client.is_model_ready(model, client_timeout=timeout_s)
    except InferenceServerException as err:
        client.close()
        raise ServerUnavailable(
            f"model '{model}' is not available on the server at {url}: {err.message()}") from None
    if not ready:
        client.close()
        raise ServerUnavailable(f"model '{model}' is not ready on the server at {url}")
    return client


def lost_server(err: Exception, client: grpcclient.InferenceServerClient, timeout_s: float = 5.0) -> bool:
    """Whether `err` means the server is gone: gRPC UNAVAILABLE and the server no longer live
    (UNAVAILABLE alone may be a refusal of this one request: overload, execution timeout)."""
    if not (isinstance(err, InferenceServerException) and err.status() == "StatusCode.UNAVAILABLE"):
        return False
    try:
        return not client.is_server_live(client_timeout=timeout_s)
    except InferenceServerException:
        return True


def exit_unavailable(err: Exception) -> NoReturn:
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(EXIT_UNAVAILABLE)


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


def random_weights_banner(models: list[str]) -> str:
    bar = "!" * 78
    return (f"{bar}\n!!! WARNING: {', '.join(models)} run(s) RANDOM weights ('{RANDOM_INIT}').\n"
            f"!!! The AP below is MEANINGLESS: load the trained checkpoint to measure accuracy.\n"
            f"{bar}")
