"""ONNX Runtime backend (`platform: "onnxruntime_onnx"` / `backend: "onnxruntime"`). One session
per instance; thread counts chosen so instances x intra-op threads never exceed the cores."""

import functools
import logging
import os
import time

from proto import model_config_pb2 as mc

from .. import batching, dtypes
from .. import config as config_util
from ..errors import InvalidArgument
from ..scheduler import Instance, InstanceModel, InstancePool
from ..types import Timing

log = logging.getLogger("backend.onnxruntime")

_ORT_TO_WIRE = {
    "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
    "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL", "tensor(string)": "BYTES",
}


_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


@functools.cache
def gpu_providers() -> tuple:
    """The GPU execution providers this onnxruntime build has (onnxruntime-gpu: TensorRT, CUDA)."""
    import onnxruntime as ort
    found = tuple(p for p in _GPU_PROVIDERS if p in ort.get_available_providers())
    if found and hasattr(ort, "preload_dlls"):
        try:  # CUDA and cuDNN from pip's nvidia-* wheels (make install GPU=1), where installed
            ort.preload_dlls()
        except Exception as e:
            log.debug("onnxruntime.preload_dlls: %s", e)
    return found


def normalize(config):
    """KIND_AUTO is a GPU where this onnxruntime can use one (Triton's rule); KIND_GPU stays GPU
    and falls back to the CPU provider at load, saying so, when it cannot."""
    config_util.resolve_kinds(config, gpu_available=bool(gpu_providers()))


def _providers(kind: int, device_id: int = 0, config=None) -> list:
    """Execution providers for an instance, best first: for KIND_GPU, TensorRT and CUDA on
    `device_id` where installed, always CPU last. Parameters named `trt_*` are TensorRT's own
    options (e.g. trt_profile_min_shapes: one engine for every input size)."""
    if kind != mc.ModelInstanceGroup.KIND_GPU:
        return ["CPUExecutionProvider"]
    trt = {"device_id": device_id}
    if config is not None:
        trt.update((k, v.string_value) for k, v in config.parameters.items() if k.startswith("trt_"))
    options = {"TensorrtExecutionProvider": trt, "CUDAExecutionProvider": {"device_id": device_id}}
    return [(p, options[p]) for p in gpu_providers()] + ["CPUExecutionProvider"]


def session_options(config, intra, inter):
    """ONNX Runtime SessionOptions for a model config (also used by bench/pipeline.py, so that
    in-process figures are taken with the server's settings)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra
    opts.inter_op_num_threads = inter
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ONNX Runtime's own session settings pass through under their names, e.g.
    # session.intra_op.allow_spinning "0": idle intra-op threads sleep instead of spinning
    # (they would take the cores from the other models of a pipeline between runs).
    for key, value in config.parameters.items():
        if key.startswith("session."):
            opts.add_session_config_entry(key, value.string_value)
    return opts


class OrtInstance(Instance):
    def __init__(self, name, path, config, kind, device_id, intra, inter):
        import onnxruntime as ort
        self.name = name
        self.session = ort.InferenceSession(path, sess_options=session_options(config, intra, inter),
                                            providers=_providers(kind, device_id, config))
        self.model_name = config.name  # (batching and outputs: set by load() once the config is complete)
        used = self.session.get_providers()
        if kind == mc.ModelInstanceGroup.KIND_GPU and used[0] not in _GPU_PROVIDERS:
            log.warning("model '%s' instance '%s': KIND_GPU but no GPU execution provider (this "
                        "onnxruntime has %s; install onnxruntime-gpu: make install GPU=1): running on the CPU",
                        config.name, name, ", ".join(gpu_providers()) or "none")
        log.info("model '%s' instance '%s': %s%s", config.name, name, ", ".join(used),
                 f" on GPU {device_id}" if used[0] in _GPU_PROVIDERS else "")

    def execute(self, requests):
        t0 = time.monotonic_ns()
        feeds = batching.feeds(requests, self.batching)
        t1 = time.monotonic_ns()
        results = [dict(zip(self.outputs, self.session.run(self.outputs, f))) for f in feeds]
        t2 = time.monotonic_ns()
        responses = batching.responses(requests, self.batching, self.model_name, results)
        return responses, Timing(0, t1 - t0, t2 - t1, time.monotonic_ns() - t2)

    def close(self):
        self.session = None


DEFAULT_MAX_BATCH_SIZE = 4  # Triton's --backend-config=default-max-batch-size default


def _autocomplete(config, session):
    """Fill inputs/outputs from the ONNX graph when the config leaves them out (Triton does). A
    generated config (none of them given, max_batch_size 0) of a graph whose tensors all lead with
    a dynamic dimension gets Triton's default max_batch_size and the dynamic batcher."""
    tensors = list(session.get_inputs()) + list(session.get_outputs())
    if (not config.input and not config.output and config.max_batch_size == 0 and tensors
            and all(t.shape and not (isinstance(t.shape[0], int) and t.shape[0] > 0) for t in tensors)):
        config.max_batch_size = DEFAULT_MAX_BATCH_SIZE
        if not config.HasField("sequence_batching") and not config.HasField("dynamic_batching"):
            config.dynamic_batching.preferred_batch_size.append(DEFAULT_MAX_BATCH_SIZE)
        log.info("model '%s': max_batch_size autofilled to %d (the graph batches; no configured "
                 "inputs or outputs)", config.name, DEFAULT_MAX_BATCH_SIZE)
    mbs = config.max_batch_size

    def dims(shape):
        d = [s if isinstance(s, int) and s > 0 else -1 for s in shape]
        return d[1:] if mbs > 0 else d
    if not config.input:
        for i in session.get_inputs():
            config.input.add(name=i.name, data_type=dtypes.config_from_wire(_ORT_TO_WIRE[i.type]), dims=dims(i.shape))
    if not config.output:
        for o in session.get_outputs():
            config.output.add(name=o.name, data_type=dtypes.config_from_wire(_ORT_TO_WIRE[o.type]), dims=dims(o.shape))


def _check_against_graph(config, session):
    graph_in = {i.name: i for i in session.get_inputs()}
    graph_out = {o.name: o for o in session.get_outputs()}
    for io, graph, what in ((config.input, graph_in, "input"), (config.output, graph_out, "output")):
        for t in io:
            g = graph.get(t.name)
            if g is None:
                raise InvalidArgument(
                    f"unexpected {what} '{t.name}' in model configuration of '{config.name}': the ONNX "
                    f"model has {what}s {sorted(graph)}")
            want = dtypes.wire_from_config(t.data_type)
            if _ORT_TO_WIRE.get(g.type) != want:
                raise InvalidArgument(
                    f"unexpected datatype {want} for {what} '{t.name}' of '{config.name}': the ONNX "
                    f"model has {g.type}")
    if len(config.input) != len(graph_in):  # (an input left out: only auto-complete adds it)
        raise InvalidArgument(f"unable to load model '{config.name}', configuration expects "
                              f"{len(config.input)} inputs, model provides {len(graph_in)}")


def load(config, version: int, model_dir: str, version_dir: str, execution_timeout_s: float = 0,
         auto_complete_config: bool = True):
    path = os.path.join(version_dir, config.default_model_filename or "model.onnx")
    if os.path.isdir(path):
        path = os.path.join(path, "model.onnx")
    if not os.path.isfile(path):
        raise InvalidArgument(f"unable to find '{path}' for model '{config.name}' (build it first; "
                              f"for the HRNet model: make model)")
    placements = config_util.instance_placements(config)
    total = len(placements)
    cores = os.cpu_count() or 1
    intra = int(config_util.parameter(config, "intra_op_thread_count", 0) or 0) or max(1, cores // total)
    inter = int(config_util.parameter(config, "inter_op_thread_count", 0) or 0) or 1
    if intra * total > cores:
        log.warning("model '%s': %d instances x %d intra-op threads oversubscribe %d cores",
                    config.name, total, intra, cores)
    pool = InstancePool([
        (name, functools.partial(OrtInstance, name, path, config, group.kind, device, intra, inter))
        for name, group, device in placements])
    try:
        session = pool.instances[0].session
        if auto_complete_config:  # off with --disable-auto-complete-config
            _autocomplete(config, session)
        _check_against_graph(config, session)
    except BaseException:
        pool.close()
        raise
    for inst in pool.instances:
        inst.outputs = [o.name for o in config.output]
        inst.batching = config.max_batch_size > 0
    meta = session.get_modelmeta().custom_metadata_map
    for key, value in meta.items():
        if key not in config.parameters:
            config.parameters[key].string_value = value
    weights = meta.get("weights")
    if weights == "random-init":
        log.warning("!" * 78)
        log.warning("model '%s' runs RANDOM weights (random-init): its outputs are meaningless. "
                    "Export the real checkpoint with: make model CHECKPOINT=path.pth", config.name)
        log.warning("!" * 78)
    elif weights:
        log.info("model '%s' weights: %s %s", config.name, weights, meta.get("weights_sha256", ""))
    return InstanceModel(config, version, model_dir, pool, execution_timeout_s)
