"""Model configuration: config.pbtxt parsing, Triton's defaults, and the JSON form Python models get."""

import json
import os

from google.protobuf import json_format, text_format

from proto import model_config_pb2 as mc

from . import registry
from .errors import InvalidArgument

KIND = mc.ModelInstanceGroup


def backend_of(config: mc.ModelConfig) -> str:
    """The backend that runs a model: `backend` if set, else derived from `platform`."""
    if config.backend:
        return config.backend
    return registry.backend_for_platform(config.platform)


def read_config(model_dir: str, config_name: str = "", required: bool = False) -> mc.ModelConfig:
    """Parse `<model>/config.pbtxt`, or `<model>/configs/<name>.pbtxt` when that exists
    (tritonserver's --model-config-name). Without one the config is empty (auto-complete fills
    it), or, when `required` (--disable-auto-complete-config), that is Triton's error."""
    path = os.path.join(model_dir, "config.pbtxt")
    if config_name:
        alt = os.path.join(model_dir, "configs", config_name + ".pbtxt")
        if os.path.isfile(alt):
            path = alt
    config = mc.ModelConfig()
    if required and not os.path.isfile(path):
        raise InvalidArgument(f"failed to open text file for read {path}: No such file or directory "
                              f"(a model needs a config.pbtxt when auto-complete is disabled)")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            try:
                text_format.Parse(f.read(), config)
            except text_format.ParseError as e:
                raise InvalidArgument(f"failed to parse {os.path.relpath(path, os.path.dirname(model_dir))}: {e}")
    return config


# Triton's server-side autofill (model_config_utils.cc AutoCompleteBackendFields), for the
# backends this server shares with Triton, in Triton's order: the model file names the backend.
_FILE_BACKENDS = (("model.onnx", "onnxruntime"), ("model.py", "python"))


def fill_backend(config: mc.ModelConfig, model_dir: str):
    """A config without backend or platform gets them (and default_model_filename) from the model
    file: `default_model_filename` if given, else the first subfolder's files (as Triton, the first
    version folder by name). In place; nothing found leaves the config as it is."""
    if config.backend or config.platform:
        return
    backend = dict(_FILE_BACKENDS).get(config.default_model_filename)
    if backend is None and not config.default_model_filename:
        try:
            subdirs = sorted(e for e in os.listdir(model_dir) if os.path.isdir(os.path.join(model_dir, e)))
            found = set(os.listdir(os.path.join(model_dir, subdirs[0]))) if subdirs else set()
        except OSError:
            found = set()
        backend = next((b for f, b in _FILE_BACKENDS if f in found), None)
        if backend is None:  # this server's own backends (an Ascend OM: model.om)
            backend = next((b for b in registry.names()
                            if registry.spec(b).default_filename in found), None)
    if backend is None:
        return
    config.backend = backend
    if not config.default_model_filename:
        config.default_model_filename = registry.spec(backend).default_filename


def config_from_json(text: str) -> mc.ModelConfig:
    """The `config` override of RepositoryModelLoad: a JSON ModelConfig."""
    config = mc.ModelConfig()
    try:
        json_format.Parse(text, config)
    except (json_format.ParseError, ValueError) as e:
        raise InvalidArgument(f"failed to parse model config override: {e}")
    return config


def normalize(config: mc.ModelConfig, model_name: str) -> mc.ModelConfig:
    """Fill the defaults Triton fills (model_config_utils.cc NormalizeModelConfig) and check
    the basics. Works on a copy."""
    cfg = mc.ModelConfig()
    cfg.CopyFrom(config)
    if cfg.name and cfg.name != model_name:
        raise InvalidArgument(
            f"unexpected 'name' in model configuration: '{cfg.name}' (the model directory is '{model_name}')")
    cfg.name = model_name
    backend = backend_of(cfg)
    if not backend:
        raise InvalidArgument(f"unexpected platform type '' for {model_name}: set 'backend' or 'platform'")
    if backend == "onnxruntime" and not cfg.platform:
        cfg.platform = "onnxruntime_onnx"
    if backend == "onnxruntime" and not cfg.backend:
        cfg.backend = "onnxruntime"
    if cfg.max_batch_size < 0:
        raise InvalidArgument(f"'max_batch_size' must be non-negative value for {model_name}")
    streaming = registry.decoupled_backends()
    if cfg.model_transaction_policy.decoupled and backend not in streaming:
        raise InvalidArgument(f"model '{model_name}': the {backend} backend does not support the decoupled "
                              f"transaction policy here (only {', '.join(streaming)} models stream)")
    if not cfg.HasField("version_policy"):
        cfg.version_policy.latest.num_versions = 1
    elif cfg.version_policy.HasField("latest") and cfg.version_policy.latest.num_versions == 0:
        cfg.version_policy.latest.num_versions = 1
    if cfg.HasField("dynamic_batching") and cfg.max_batch_size > 0 and \
            not cfg.dynamic_batching.preferred_batch_size:
        cfg.dynamic_batching.preferred_batch_size.append(cfg.max_batch_size)
    if backend != "ensemble":
        if not cfg.instance_group:
            cfg.instance_group.add()
        for i, group in enumerate(cfg.instance_group):
            if not group.name:
                group.name = f"{model_name}_{i}"
            if group.count < 1:
                group.count = 1
            if any(g < 0 for g in group.gpus):
                raise InvalidArgument(f"instance group {group.name} of model {model_name} has a negative "
                                      f"device id in 'gpus'")
        # KIND_AUTO and device ids are each backend's business (registry.normalize).
        for io in list(cfg.input) + list(cfg.output):
            if not io.name:
                raise InvalidArgument(f"model input/output must specify 'name' for {model_name}")
            if io.data_type == mc.TYPE_INVALID:
                raise InvalidArgument(f"model input '{io.name}' must specify 'data_type' for {model_name}")
        for inp in cfg.input:
            for d in inp.dims:
                if d < -1 or d == 0:
                    raise InvalidArgument(
                        f"model input '{inp.name}' dimension must be integer >= 1, or -1 to indicate a "
                        f"variable-size dimension for {model_name}")
    names = [i.name for i in cfg.input]
    if len(set(names)) != len(names):
        raise InvalidArgument(f"duplicate input names in configuration of {model_name}")
    names = [o.name for o in cfg.output]
    if len(set(names)) != len(names):
        raise InvalidArgument(f"duplicate output names in configuration of {model_name}")
    return cfg


def resolve_kinds(config: mc.ModelConfig, gpu_available: bool):
    """Triton's rule for KIND_AUTO, for a backend that knows whether it can use a GPU: GPU when
    it can, else CPU. In place."""
    for group in config.instance_group:
        if group.kind == KIND.KIND_AUTO:
            group.kind = KIND.KIND_GPU if gpu_available else KIND.KIND_CPU


def instance_placements(config: mc.ModelConfig, devices: list | None = None) -> list:
    """(instance name, group, device id) of every instance: each group's `count` instances on each
    of its devices: `gpus` for KIND_GPU (GPU 0 when none are listed), `devices` for a backend that
    places its own (KIND_MODEL: an NPU backend's device_ids), device 0 for KIND_CPU (as Triton
    tells a CPU instance)."""
    out = []
    for group in config.instance_group:
        if group.kind == KIND.KIND_GPU:
            ids = list(group.gpus) or [0]
        elif group.kind == KIND.KIND_MODEL and devices is not None:
            ids = list(devices)
        else:
            ids = [0]
        k = 0
        for device in ids:
            for _ in range(group.count):
                out.append((f"{group.name}_{k}", group, device))
                k += 1
    return out


_INT64_KEYS = {"dims", "shape", "max_queue_delay_microseconds", "default_timeout_microseconds",
               "priority_levels", "default_priority_level", "max_queue_size", "num_versions",
               "versions", "max_inflight_requests", "model_version", "preferred_batch_size",
               "max_batch_size", "count", "gpus", "batch_size", "max_candidate_sequences",
               "max_sequence_idle_microseconds", "max_queue_delay_microseconds"}


def _fix_ints(node):
    """protobuf prints int64 as JSON strings; Triton hands Python models numbers (FixInt)."""
    if isinstance(node, dict):
        return {k: _fix_ints(v) if k not in _INT64_KEYS else _as_int(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_ints(v) for v in node]
    return node


def _as_int(v):
    if isinstance(v, list):
        return [_as_int(x) for x in v]
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return v
    if isinstance(v, dict):
        return _fix_ints(v)
    return v


def to_dict(config: mc.ModelConfig) -> dict:
    return _fix_ints(json_format.MessageToDict(
        config, preserving_proto_field_name=True, always_print_fields_with_no_presence=True))


def to_json(config: mc.ModelConfig) -> str:
    """The `model_config` string Triton gives a Python model's initialize()."""
    return json.dumps(to_dict(config))


def parameter(config: mc.ModelConfig, key: str, default=None):
    return config.parameters[key].string_value if key in config.parameters else default
