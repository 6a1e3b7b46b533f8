"""The backends this server can run, by name (`backend:` in a config.pbtxt, or the `platform:`
that selects one). A backend is a module, imported when the first model that names it loads (never
at server start: a backend whose runtime is missing fails only its own models). It provides

* `load(config, version, model_dir, version_dir, execution_timeout_s) -> Model`, and optionally
* `normalize(config)`: its own device rules on the normalized config (instance_group kinds,
  device ids), so that ModelConfig shows what will run.

A new backend is one `register(...)` call, here or from the code that adds it."""

import importlib
from dataclasses import dataclass

from .errors import InvalidArgument


@dataclass(frozen=True)
class BackendSpec:
    name: str
    module: str                     # imported lazily
    default_filename: str | None    # Triton's default model file name ("" = none: ensembles)
    platforms: tuple = ()           # `platform:` values that select this backend
    decoupled: bool = False         # its models may send any number of responses per request


_BACKENDS: dict[str, BackendSpec] = {}


def register(spec: BackendSpec):
    _BACKENDS[spec.name] = spec


def names() -> list:
    return sorted(_BACKENDS)


def decoupled_backends() -> list:
    return sorted(n for n, s in _BACKENDS.items() if s.decoupled)


def backend_for_platform(platform: str) -> str:
    """The backend a `platform:` value selects (itself when no backend claims it)."""
    for spec in _BACKENDS.values():
        if platform in spec.platforms:
            return spec.name
    return platform


def spec(name: str, model_name: str = "") -> BackendSpec:
    found = _BACKENDS.get(name)
    if found is None:
        raise InvalidArgument(f"unable to find backend '{name}' for model '{model_name}' "
                              f"(this server has: {', '.join(names())})")
    return found


def module(name: str, model_name: str = ""):
    return importlib.import_module(spec(name, model_name).module)


def normalize(config, backend: str):
    """The backend's own config rules (device kinds and ids), in place. A backend without any
    runs on the CPU: KIND_AUTO is KIND_CPU."""
    hook = getattr(module(backend, config.name), "normalize", None)
    if hook is not None:
        hook(config)
        return
    for group in config.instance_group:
        if group.kind == group.KIND_AUTO:
            group.kind = group.KIND_CPU


register(BackendSpec("python", "backend.backends.python_backend", "model.py", decoupled=True))
register(BackendSpec("onnxruntime", "backend.backends.onnxruntime_backend", "model.onnx", ("onnxruntime_onnx",)))
register(BackendSpec("ensemble", "backend.backends.ensemble", "", ("ensemble",)))
register(BackendSpec("ais_bench", "backend.backends.ais_bench_backend", "model.om"))
